# Twisted plugins of twisted-patch: the xtcp/xtcp6 endpoint parsers.
# Kept tiny: Twisted imports this file on every plugin scan; never import the reactor here.
from twisted_patch._plugins import xtcp, xtcp6  # noqa: F401
