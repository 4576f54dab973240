# The hosts of one Sawmill platform on DigitalOcean: a private network, droplets tagged by role, the data volume on
# the node labelled for Postgres and Kafka, a firewall, and the domain's records. No swarm token and no platform
# secret: `deploy.py nodes` forms the swarm over SSH, and `deploy.py up` makes the secrets inside it.

locals {
  # The first manager holds the data volume, the entrance (DNS points at it) and the stateful services.
  data_node_index = 0
  data_node_labels = {
    "${var.prefix}.postgres"       = "true"
    "${var.prefix}.kafka-broker-0" = "true"
    "${var.prefix}.webserver"      = "true"
  }
  # DigitalOcean names an attached volume's device after the volume.
  data_device = "/dev/disk/by-id/scsi-0DO_Volume_${var.prefix}-data"
  everywhere  = ["0.0.0.0/0", "::/0"]
}

resource "digitalocean_vpc" "platform" {
  name        = "${var.prefix}-vpc"
  region      = var.region
  ip_range    = var.vpc_ip_range
  description = "Sawmill ${var.prefix}: the swarm's private network"
}

resource "digitalocean_tag" "platform" {
  name = var.prefix
}

resource "digitalocean_tag" "manager" {
  name = "${var.prefix}-manager"
}

resource "digitalocean_tag" "worker" {
  name = "${var.prefix}-worker"
}

resource "digitalocean_ssh_key" "admin" {
  count      = length(var.ssh_public_keys)
  name       = "${var.prefix}-admin-${count.index + 1}"
  public_key = var.ssh_public_keys[count.index]
}

module "user_data" {
  source              = "../cloud-init"
  ssh_authorized_keys = var.ssh_public_keys
}

module "data_node_user_data" {
  source              = "../cloud-init"
  ssh_authorized_keys = var.ssh_public_keys
  data_device         = local.data_device
}

resource "digitalocean_volume" "data" {
  name                    = "${var.prefix}-data"
  region                  = var.region
  size                    = var.data_volume_gb
  initial_filesystem_type = "ext4"
  description             = "Sawmill ${var.prefix}: the Docker volumes of Postgres and Kafka"
}

resource "digitalocean_droplet" "manager" {
  count      = var.manager_count
  name       = "${var.prefix}-manager-${count.index + 1}"
  image      = var.image
  region     = var.region
  size       = var.manager_size
  vpc_uuid   = digitalocean_vpc.platform.id
  ssh_keys   = digitalocean_ssh_key.admin[*].fingerprint
  tags       = [digitalocean_tag.platform.id, digitalocean_tag.manager.id]
  monitoring = true
  # Attached at creation, so cloud-init can mount it before Docker is installed.
  volume_ids = count.index == local.data_node_index ? [digitalocean_volume.data.id] : []
  user_data  = count.index == local.data_node_index ? module.data_node_user_data.user_data : module.user_data.user_data

  lifecycle {
    # cloud-init reads user data on the first boot only: a changed key list must not replace a node and its swarm state.
    ignore_changes = [user_data, ssh_keys]
  }
}

resource "digitalocean_droplet" "worker" {
  count      = var.worker_count
  name       = "${var.prefix}-worker-${count.index + 1}"
  image      = var.image
  region     = var.region
  size       = var.worker_size
  vpc_uuid   = digitalocean_vpc.platform.id
  ssh_keys   = digitalocean_ssh_key.admin[*].fingerprint
  tags       = [digitalocean_tag.platform.id, digitalocean_tag.worker.id]
  monitoring = true
  user_data  = module.user_data.user_data

  lifecycle {
    ignore_changes = [user_data, ssh_keys]
  }
}

resource "digitalocean_firewall" "platform" {
  #checkov:skip=CKV_DIO_4:80 and 443 are the platform's public entrance and must be open to all; every other port is closed to the public, which tests/unit/test_terraform_module.py asserts rule by rule
  name = "${var.prefix}-firewall"
  tags = [digitalocean_tag.platform.id]

  # The public reaches only the entrance: HTTP (redirects, ACME HTTP-01) and HTTPS.
  inbound_rule {
    protocol         = "tcp"
    port_range       = "80"
    source_addresses = ["0.0.0.0/0", "::/0"]
  }

  inbound_rule {
    protocol         = "tcp"
    port_range       = "443"
    source_addresses = ["0.0.0.0/0", "::/0"]
  }

  inbound_rule {
    protocol         = "tcp"
    port_range       = "22"
    source_addresses = var.admin_cidrs
  }

  # Swarm's own ports, between the platform's droplets only: managers (2377), gossip (7946), overlay data (4789).
  inbound_rule {
    protocol    = "tcp"
    port_range  = "2377"
    source_tags = [digitalocean_tag.platform.id]
  }

  inbound_rule {
    protocol    = "tcp"
    port_range  = "7946"
    source_tags = [digitalocean_tag.platform.id]
  }

  inbound_rule {
    protocol    = "udp"
    port_range  = "7946"
    source_tags = [digitalocean_tag.platform.id]
  }

  inbound_rule {
    protocol    = "udp"
    port_range  = "4789"
    source_tags = [digitalocean_tag.platform.id]
  }

  dynamic "inbound_rule" {
    for_each = var.internal_tcp_ports
    content {
      protocol    = "tcp"
      port_range  = tostring(inbound_rule.value)
      source_tags = [digitalocean_tag.platform.id]
    }
  }

  # Out: packages, images, ACME and DNS.
  outbound_rule {
    protocol              = "tcp"
    port_range            = "1-65535"
    destination_addresses = local.everywhere
  }

  outbound_rule {
    protocol              = "udp"
    port_range            = "1-65535"
    destination_addresses = local.everywhere
  }

  outbound_rule {
    protocol              = "icmp"
    destination_addresses = local.everywhere
  }
}

resource "digitalocean_domain" "platform" {
  name = var.domain
}

resource "digitalocean_record" "apex" {
  domain = digitalocean_domain.platform.id
  type   = "A"
  name   = "@"
  value  = digitalocean_droplet.manager[local.data_node_index].ipv4_address
  ttl    = 300
}

resource "digitalocean_record" "wildcard" {
  domain = digitalocean_domain.platform.id
  type   = "A"
  name   = "*"
  value  = digitalocean_droplet.manager[local.data_node_index].ipv4_address
  ttl    = 300
}
