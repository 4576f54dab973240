# The first-boot configuration of every node: Debian's docker.io and a deploy user holding only public keys.
# No swarm token and no platform secret: `deploy.py nodes` joins the nodes over SSH afterwards.
locals {
  # cloud-init's `mounts` runs before packages are installed, so Docker never writes to the root disk first.
  data_mounts = {
    for k, v in { mounts = [[var.data_device, var.data_mount_point, "ext4", "defaults,nofail,discard,noatime", "0", "2"]] } :
    k => v if var.data_device != ""
  }

  config = merge({
    package_update = true
    packages       = ["docker.io", "unattended-upgrades"]
    disable_root   = true
    ssh_pwauth     = false
    users = [{
      name                = var.deploy_user
      shell               = "/bin/bash"
      lock_passwd         = true
      ssh_authorized_keys = var.ssh_authorized_keys
    }]
    # runcmd runs after the packages are installed, when the docker group exists.
    runcmd = [
      ["usermod", "--append", "--groups", "docker", var.deploy_user],
      ["systemctl", "enable", "--now", "docker"],
    ]
  }, local.data_mounts)
}
