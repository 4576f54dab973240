# One Sawmill platform on DigitalOcean. The provider reads its API token from DIGITALOCEAN_TOKEN, never from a file
# here. After `terraform apply`: `terraform output -json hosts > hosts.json` for `deploy.py nodes`, and
# `export DOCKER_HOST=$(terraform output -raw docker_host)` for `deploy.py up`.
terraform {
  required_version = ">= 1.5"
  required_providers {
    digitalocean = {
      source  = "digitalocean/digitalocean"
      version = "~> 2.0"
    }
  }
}

provider "digitalocean" {}

module "platform" {
  source          = "../modules/digitalocean"
  prefix          = var.prefix
  region          = var.region
  manager_count   = var.manager_count
  worker_count    = var.worker_count
  manager_size    = var.manager_size
  worker_size     = var.worker_size
  data_volume_gb  = var.data_volume_gb
  domain          = var.domain
  admin_cidrs     = var.admin_cidrs
  ssh_public_keys = var.ssh_public_keys
}
