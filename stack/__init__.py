"""Sawmill's deploy engine: config → plan → apply → verify (see README "How it works")."""

from python_on_whales import client_config

# python-on-whales re-inspects an object on every attribute read once 10 ms have passed. The engine lists
# objects afresh whenever it needs new state, so one read per object is enough: far fewer docker calls, and
# no object (a task Swarm replaces, say) vanishing between two reads of its own fields.
client_config.CACHE_VALIDITY_PERIOD = 300
