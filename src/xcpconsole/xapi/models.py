"""Plain records of what the CLI and the web gateway show: VMs and their consoles.

Built from ``get_all_records`` dictionaries so one XenAPI round trip serves a
whole listing; unknown or missing fields get harmless defaults (a hostile or
older host must not crash a listing).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

NULL_REF = "OpaqueRef:NULL"


def _str(record: dict[str, Any], key: str, default: str = "") -> str:
    value = record.get(key, default)
    return value if isinstance(value, str) else default


@dataclass(frozen=True)
class VmInfo:
    """One VM as listed by ``xcpconsole vms``."""

    ref: str
    uuid: str
    name_label: str
    power_state: str
    is_control_domain: bool = False
    console_protocols: tuple[str, ...] = ()
    name_description: str = ""
    resident_on: str = NULL_REF

    @classmethod
    def from_record(cls, ref: str, record: dict[str, Any],
                    protocols: tuple[str, ...] = ()) -> VmInfo:
        return cls(
            ref=ref, uuid=_str(record, "uuid"), name_label=_str(record, "name_label"),
            power_state=_str(record, "power_state", "Halted"),
            is_control_domain=record.get("is_control_domain") is True,
            console_protocols=protocols,
            name_description=_str(record, "name_description"),
            resident_on=_str(record, "resident_on", NULL_REF),
        )

    def to_json(self, host_names: dict[str, str] | None = None) -> dict[str, Any]:
        """The JSON shape of ``xcpconsole vms --json`` (no refs: they are per-session noise);
        ``resident_on`` is the name of the host it runs on (None when it does not run)."""
        return {"name_label": self.name_label, "uuid": self.uuid,
                "power_state": self.power_state, "is_control_domain": self.is_control_domain,
                "console_protocols": list(self.console_protocols),
                "name_description": self.name_description,
                "resident_on": (host_names or {}).get(self.resident_on)}


@dataclass(frozen=True)
class ConsoleInfo:
    """One console record, with its VM's uuid and name like ``xe console-list``."""

    ref: str
    uuid: str
    vm_ref: str
    vm_uuid: str
    vm_name_label: str
    protocol: str
    location: str
    vm_resident_on: str = NULL_REF  # ref of the host the VM runs on

    def to_json(self, host_names: dict[str, str] | None = None) -> dict[str, Any]:
        """``xe console-list`` fields, with dashes as underscores, and the name of the
        host that serves the console (the one the VM runs on)."""
        data = asdict(self)
        del data["ref"], data["vm_ref"], data["vm_resident_on"]
        data["resident_on"] = (host_names or {}).get(self.vm_resident_on)
        return data
