"""The scripted guest behind the virtual terminal: a boot log, a login, a tiny shell.

Sans-I/O: :meth:`ScriptedGuest.boot_steps` lists what the "kernel" prints and
how long to wait before each chunk (fixed delays: the boot is fast and the
same every time, so tests can compare pixels); :meth:`ScriptedGuest.receive_input`
takes typed bytes and returns what the guest writes back (echo, prompts,
command output).  The terminal adapter owns the clock and the sockets.

Like ``agetty`` flushing the tty before it prints ``login:``, input typed while
the guest boots is dropped.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from ..backends import BackendError

LINE_DELAY = 0.015  # seconds between boot log lines: ~20 lines, a third of a second
MAX_LINE = 256  # characters kept in the line buffer; more are refused with a bell
KERNEL = "6.1.0-18-amd64"
UNAME = "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01) x86_64 GNU/Linux"
OK = "[  \x1b[0;32mOK\x1b[0m  ] "


class GuestState(Enum):
    BOOTING = "BOOTING"
    LOGIN = "LOGIN"  # reading a user name (echoed)
    PASSWORD = "PASSWORD"  # reading a password (not echoed)
    SHELL = "SHELL"  # root's shell


def _linux_boot(vm_name: str, hostname: str) -> list[str]:
    """A ``quiet`` Debian boot on Xen PV: it fits one screen, so the login prompt has
    free rows below it (as on a freshly booted guest)."""
    kernel_lines = [
        f"Linux version {KERNEL} (debian-kernel@lists.debian.org)",
        "Command line: root=/dev/xvda1 ro console=hvc0 quiet",
        "Hypervisor detected: Xen PV",
        f"Xen: domain name \"{vm_name}\"",
        "blkfront: xvda: flush diskcache: enabled; persistent grants: on",
    ]
    lines = [f"[{i * 0.173411:12.6f}] {text}" for i, text in enumerate(kernel_lines)]
    lines += [
        "",
        "Welcome to \x1b[1mDebian GNU/Linux 12 (bookworm)\x1b[0m!",
        "",
        f"[{1.204821:12.6f}] systemd[1]: Hostname set to <{hostname}>.",
        OK + "Started systemd-journald.service - Journal Service.",
        OK + "Reached target local-fs.target - Local File Systems.",
        OK + "Started xe-linux-distribution.service - Xen guest agent.",
        OK + "Started ssh.service - OpenBSD Secure Shell server.",
        OK + "Started getty@hvc0.service - Getty on hvc0.",
        OK + "Reached target multi-user.target - Multi-User System.",
        "",
        f"Debian GNU/Linux 12 {hostname} hvc0",
        "",
    ]
    return lines


def _dom0_boot(vm_name: str, hostname: str) -> list[str]:
    lines = [
        f"[{i * 0.311:12.6f}] {text}" for i, text in enumerate([
            "Linux version 4.19.0+1 (mockbuild@builder) #1 SMP",
            "Command line: root=LABEL=root-xcp ro nolvm console=hvc0",
            f"Xen: domain 0 \"{vm_name}\"",
            "Hypervisor detected: Xen PV",
            "xen:balloon: Initialising balloon driver",
            "EXT4-fs (sda1): mounted filesystem with ordered data mode.",
        ])
    ]
    lines += [
        "",
        "Welcome to \x1b[1mXCP-ng 8.3\x1b[0m!",
        "",
        OK + "Started Journal Service.",
        OK + "Started Xen xenstored.",
        OK + "Started Xen Console Daemon.",
        OK + "Started XAPI - The Xen API toolstack.",
        OK + f"Reached target Multi-User System on {hostname}.",
        "",
        f"XCP-ng 8.3 (xenenterprise) {hostname} hvc0",
        "",
    ]
    return lines


ALPINE_KERNEL = "6.6.14-0-virt"
ALPINE_UNAME = "#1-Alpine SMP PREEMPT_DYNAMIC Mon, 29 Jan 2024 10:21:06 +0000 x86_64 Linux"


def _alpine_boot(vm_name: str, hostname: str) -> list[str]:
    """Alpine Linux 3.19 on Xen PV: a virt kernel, OpenRC's "*  ... [ ok ]" lines,
    and /etc/issue's two lines above the login prompt."""
    kernel_lines = [
        f"Linux version {ALPINE_KERNEL} (buildozer@build-3-19-x86_64) "
        "(gcc (Alpine 13.2.1_git20231014) 13.2.1 20231014)",
        "Command line: BOOT_IMAGE=vmlinuz-virt root=/dev/xvda3 modules=ext4 console=hvc0",
        "Hypervisor detected: Xen PV",
        f"Xen: domain name \"{vm_name}\"",
    ]
    lines = [f"[{i * 0.091337:12.6f}] {text}" for i, text in enumerate(kernel_lines)]
    ok = " [ \x1b[1;32mok\x1b[0m ]"
    lines += [
        "",
        f"   \x1b[1;32mOpenRC\x1b[0m 0.52.1 is starting up Linux {ALPINE_KERNEL} (x86_64)",
        "",
        " * /proc is already mounted",
        " * Mounting /run ..." + ok,
        " * Caching service dependencies ..." + ok,
        " * Remounting root filesystem read/write ..." + ok,
        f" * Setting hostname ...{ok}",
        " * Starting networking ..." + ok,
        " * Starting crond ..." + ok,
        " * Starting sshd ..." + ok,
        "",
        "Welcome to Alpine Linux 3.19",
        f"Kernel {ALPINE_KERNEL} on an x86_64 (/dev/hvc0)",
        "",
    ]
    return lines


@dataclass(frozen=True)
class Distro:
    """What a guest's userland prints: its boot, its shell and its messages."""

    boot: Callable[[str, str], list[str]]
    kernel: str
    uname: str  # `uname -a` after "Linux HOST KERNEL"
    issue: Callable[[str], str]  # what getty prints again after a logout
    motd: str  # printed after a root login, before the first prompt
    prompt: Callable[[str], str]
    not_found: str  # "{name}" is the unknown command


DEBIAN = Distro(
    boot=_linux_boot, kernel=KERNEL, uname=UNAME,
    issue=lambda host: f"Debian GNU/Linux 12 {host} hvc0\r\n\r\n",
    motd="", prompt=lambda host: f"[root@{host} ~]# ",
    not_found="-bash: {name}: command not found",
)
ALPINE = Distro(
    boot=_alpine_boot, kernel=ALPINE_KERNEL, uname=ALPINE_UNAME,
    issue=lambda host: f"Welcome to Alpine Linux 3.19\r\nKernel {ALPINE_KERNEL} on an "
                       "x86_64 (/dev/hvc0)\r\n\r\n",
    motd="Welcome to Alpine!\r\n\r\nThe Alpine Wiki contains a large amount of how-to "
         "guides and general\r\ninformation about administrating Alpine systems.\r\n"
         "See <https://wiki.alpinelinux.org/>.\r\n\r\n",
    prompt=lambda host: f"{host}:~# ",
    not_found="-ash: {name}: not found",
)
XCP_DOM0 = Distro(
    boot=_dom0_boot, kernel="4.19.0+1", uname="#1 SMP x86_64 x86_64 x86_64 GNU/Linux",
    issue=lambda host: f"XCP-ng 8.3 (xenenterprise) {host} hvc0\r\n\r\n",
    motd="", prompt=lambda host: f"[root@{host} ~]# ",
    not_found="-bash: {name}: command not found",
)
BOOT_SCRIPTS: dict[str, Distro] = {"linux": DEBIAN, "alpine": ALPINE, "dom0": XCP_DOM0}


class ScriptedGuest:
    """A deterministic guest OS: boot log, ``login:``, ``Password:``, a root shell."""

    def __init__(self, *, vm_name: str, hostname: str, boot_script: str = "linux",
                 line_delay: float = LINE_DELAY) -> None:
        if boot_script not in BOOT_SCRIPTS:
            known = ", ".join(sorted(BOOT_SCRIPTS))
            raise BackendError(f"unknown boot_script {boot_script!r} (known: {known})")
        self.vm_name = vm_name
        self.hostname = hostname
        self.boot_script = boot_script
        self.distro = BOOT_SCRIPTS[boot_script]
        self.line_delay = line_delay
        self.state = GuestState.BOOTING
        self._line: list[str] = []
        self._user = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._escape = b""  # an incomplete escape sequence being skipped

    # -- output ------------------------------------------------------------------
    def boot_steps(self) -> list[tuple[float, bytes]]:
        """(seconds to wait, bytes to print) for the whole boot; then call finish_boot."""
        lines = self.distro.boot(self.vm_name, self.hostname)
        steps = [(self.line_delay, (line + "\r\n").encode()) for line in lines]
        return [(0.0, b"\x1b[0m\x1b[H\x1b[2J"), *steps]

    def finish_boot(self) -> bytes:
        """The boot is over: getty prints the login prompt."""
        self.state = GuestState.LOGIN
        return self.login_prompt().encode()

    def login_prompt(self) -> str:
        return f"{self.hostname} login: "

    def shell_prompt(self) -> str:
        return self.distro.prompt(self.hostname)

    # -- input -------------------------------------------------------------------
    def receive_input(self, data: bytes) -> bytes:
        """Bytes typed by a client -> bytes the guest writes to the terminal."""
        if self.state is GuestState.BOOTING:
            return b""
        out: list[str] = []
        for byte in data:
            out.append(self._byte(byte))
        return "".join(out).encode("utf-8")

    def _echo(self) -> bool:
        return self.state is not GuestState.PASSWORD

    def _byte(self, byte: int) -> str:
        if self._escape:
            self._escape += bytes([byte])
            if len(self._escape) == 2 and byte not in b"[O":
                self._escape = b""
            elif (len(self._escape) > 2 and 0x40 <= byte <= 0x7E) or len(self._escape) > 16:
                self._escape = b""  # the whole sequence (arrow keys...) is ignored
            return ""
        if byte == 0x1B:
            self._escape = b"\x1b"
            return ""
        if byte in (0x0D, 0x0A):
            return self._end_of_line()
        if byte in (0x7F, 0x08):
            if self._line:
                self._line.pop()
                return "\b \b" if self._echo() else ""
            return ""
        if byte == 0x15:  # ^U: kill the line
            n = len(self._line)
            self._line.clear()
            return "\b \b" * n if self._echo() else ""
        if byte == 0x03:  # ^C
            self._line.clear()
            if self.state is GuestState.SHELL:
                return "^C\r\n" + self.shell_prompt()
            self.state = GuestState.LOGIN
            return "^C\r\n\r\n" + self.login_prompt()
        if byte == 0x04 and not self._line and self.state is GuestState.SHELL:  # ^D
            return self._logout()
        if byte < 0x20:
            return ""  # other control characters: ignored by this line discipline
        text = self._decoder.decode(bytes([byte]))
        if not text:
            return ""
        if len(self._line) >= MAX_LINE:
            return "\a"
        self._line.append(text)
        return text if self._echo() else ""

    def _end_of_line(self) -> str:
        line = "".join(self._line)
        self._line.clear()
        if self.state is GuestState.LOGIN:
            if not line.strip():
                return "\r\n" + self.login_prompt()
            self._user = line.strip()
            self.state = GuestState.PASSWORD
            return "\r\nPassword: "
        if self.state is GuestState.PASSWORD:
            if self._user == "root":
                self.state = GuestState.SHELL
                motd = self.distro.motd or f"Linux {self.hostname} {self._uname()}\r\n\r\n"
                return "\r\n" + motd + self.shell_prompt()
            self.state = GuestState.LOGIN
            return "\r\n\r\nLogin incorrect\r\n" + self.login_prompt()
        return "\r\n" + self._run(line.strip())

    def _logout(self) -> str:
        self.state = GuestState.LOGIN
        return "logout\r\n\r\n" + self.distro.issue(self.hostname) + self.login_prompt()

    def _uname(self) -> str:
        return f"{self.distro.kernel} {self.distro.uname}"

    def _run(self, command: str) -> str:
        """Output of one shell command line, followed by the next prompt."""
        name, _, args = command.partition(" ")
        args = args.strip()
        if not name:
            out = ""
        elif name == "echo":
            out = args + "\r\n"
        elif command == "uname -a":
            out = f"Linux {self.hostname} {self._uname()}\r\n"
        elif command == "uname":
            out = "Linux\r\n"
        elif command == "hostname":
            out = self.hostname + "\r\n"
        elif command == "clear":
            out = "\x1b[H\x1b[2J"
        elif command in ("exit", "logout"):
            return self._logout()[len("logout\r\n"):] if command == "exit" else self._logout()
        else:
            out = self.distro.not_found.format(name=name) + "\r\n"
        return out + self.shell_prompt()
