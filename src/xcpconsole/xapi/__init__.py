"""XenAPI access through the official SDK: sessions, lookups and plain records."""

from .models import ConsoleInfo, VmInfo
from .pool import HostInfo
from .session import XapiSession

__all__ = ["ConsoleInfo", "HostInfo", "VmInfo", "XapiSession"]
