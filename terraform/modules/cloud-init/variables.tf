variable "deploy_user" {
  description = "The account `deploy.py` logs in as over SSH; it may drive Docker (member of the docker group)."
  type        = string
  default     = "deploy"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_-]{0,31}$", var.deploy_user))
    error_message = "deploy_user must be a Linux user name: lower-case letters, digits, '_' and '-', at most 32."
  }
}

variable "ssh_authorized_keys" {
  description = "Public SSH keys (OpenSSH one-line format) allowed to log in as the deploy user."
  type        = list(string)

  validation {
    condition     = length(var.ssh_authorized_keys) > 0 && alltrue([for k in var.ssh_authorized_keys : can(regex("^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh.com|sk-ecdsa-sha2-nistp256@openssh.com) [A-Za-z0-9+/=]+( .*)?$", k))])
    error_message = "ssh_authorized_keys needs at least one public key, each one line such as 'ssh-ed25519 AAAA... me@laptop' (never a private key)."
  }
}

variable "data_device" {
  description = "A block device holding the node's Docker volumes (Postgres, Kafka), mounted before Docker is installed; empty on nodes without one."
  type        = string
  default     = ""
}

variable "data_mount_point" {
  description = "Where data_device is mounted: Docker's volume directory, so the platform's named volumes live on it."
  type        = string
  default     = "/var/lib/docker/volumes"
}
