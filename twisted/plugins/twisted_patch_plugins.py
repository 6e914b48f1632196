# Twisted plugins of twisted-patch: the xtcp/xtcp6/xsystemd endpoint parsers and the
# exclusive / exclusive-iocp reactors.
# Kept tiny: Twisted imports this file on every plugin scan; never import the reactor here.
from twisted_patch._plugins import exclusive, exclusive_iocp, xsystemd, xtcp, xtcp6  # noqa: F401
