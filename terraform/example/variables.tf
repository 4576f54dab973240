variable "prefix" {
  description = "Sawmill's `prefix` (sawmill.toml), so node labels and names match the platform's."
  type        = string
  default     = "sawmill"
}

variable "region" {
  description = "DigitalOcean region slug."
  type        = string
  default     = "fra1"
}

variable "manager_count" {
  description = "Swarm managers: 1, 3 or 5."
  type        = number
  default     = 1
}

variable "worker_count" {
  description = "Swarm workers."
  type        = number
  default     = 0
}

variable "manager_size" {
  description = "Droplet size of the managers (the first holds Postgres, Kafka and the entrance)."
  type        = string
  default     = "s-4vcpu-8gb"
}

variable "worker_size" {
  description = "Droplet size of the workers."
  type        = string
  default     = "s-2vcpu-4gb"
}

variable "data_volume_gb" {
  description = "Block volume for the Docker volumes of Postgres and Kafka, in GB."
  type        = number
  default     = 50
}

variable "domain" {
  description = "Your domain, e.g. example.com; its name servers must point at DigitalOcean's."
  type        = string
}

variable "admin_cidrs" {
  description = "Addresses allowed to SSH in (yours, and your CI runner's fixed egress), e.g. [\"203.0.113.7/32\"]."
  type        = list(string)
}

variable "ssh_public_keys" {
  description = "Public keys (one line each) that may log in as the deploy user: yours and the CI deploy key's."
  type        = list(string)
}
