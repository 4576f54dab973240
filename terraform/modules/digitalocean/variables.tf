variable "prefix" {
  description = "Sawmill's `prefix`: starts every resource name and tag, and the node labels (`<prefix>.postgres`)."
  type        = string
  default     = "sawmill"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,30}$", var.prefix))
    error_message = "prefix must be lower-case letters, digits and '-', starting with a letter."
  }
}

variable "region" {
  description = "DigitalOcean region slug, e.g. fra1, ams3, nyc3."
  type        = string
}

variable "vpc_ip_range" {
  description = "The private network of the nodes (must not overlap another VPC of the account)."
  type        = string
  default     = "10.118.0.0/20"
}

variable "image" {
  description = "Droplet image: Debian 12, whose docker.io the user data installs."
  type        = string
  default     = "debian-12-x64"
}

variable "manager_count" {
  description = "Swarm managers: 1, or 3 or 5 to survive losing a manager (Raft needs a majority)."
  type        = number
  default     = 1

  validation {
    condition     = contains([1, 3, 5], var.manager_count)
    error_message = "manager_count must be 1, 3 or 5: an even number of managers tolerates no more failures than one less."
  }
}

variable "worker_count" {
  description = "Swarm workers (0 or more)."
  type        = number
  default     = 0

  validation {
    condition     = var.worker_count >= 0 && floor(var.worker_count) == var.worker_count
    error_message = "worker_count must be a whole number, 0 or more."
  }
}

variable "manager_size" {
  description = "Droplet size of the managers; the first one also holds Postgres, Kafka and the entrance."
  type        = string
  default     = "s-4vcpu-8gb"
}

variable "worker_size" {
  description = "Droplet size of the workers."
  type        = string
  default     = "s-2vcpu-4gb"
}

variable "data_volume_gb" {
  description = "Size of the block volume holding the Docker volumes (Postgres, Kafka) on the first manager."
  type        = number
  default     = 50
}

variable "domain" {
  description = "The platform's domain: the landing page is served on it and every service on a subdomain."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]*[a-z0-9])?\\.)+[a-z]{2,}$", var.domain))
    error_message = "domain must be a DNS name such as example.com (lower case, no trailing dot)."
  }
}

variable "admin_cidrs" {
  description = "The only addresses allowed to reach SSH (22/tcp): your office, your VPN, your CI runner's fixed egress."
  type        = list(string)

  validation {
    condition     = length(var.admin_cidrs) > 0 && alltrue([for c in var.admin_cidrs : can(cidrhost(c, 0)) && !contains(["0.0.0.0/0", "::/0"], c)])
    error_message = "admin_cidrs needs at least one CIDR (e.g. 203.0.113.7/32), and never 0.0.0.0/0 or ::/0."
  }
}

variable "ssh_public_keys" {
  description = "Public SSH keys (one line each) of the people and the CI job that may log in as the deploy user."
  type        = list(string)
}

variable "internal_tcp_ports" {
  description = "Further TCP ports open between the platform's droplets only, e.g. the image registry's."
  type        = list(number)
  default     = []
}
