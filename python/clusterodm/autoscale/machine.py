"""docker-machine, run as a subprocess with argument lists (never a local shell).

`docker-machine ssh <name> <command>` hands the command to the remote shell, so remote commands
are given as argument lists and quoted here argument by argument: nothing a user controls can
become shell syntax on the machine. Secrets are masked in everything this module reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

log = logging.getLogger("clusterodm.autoscale.machine")

MASK = "****"
CREATE_TIMEOUT_S = 900.0
SSH_TIMEOUT_S = 900.0
QUICK_TIMEOUT_S = 120.0


class Aborted(Exception):
    """The caller's abort event fired while a docker-machine call ran (the call was killed)."""


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.code == 0

    def reason(self) -> str:
        """Last non-empty line of stderr (or stdout): docker-machine puts the cause there."""
        for text in (self.stderr, self.stdout):
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            if lines:
                return lines[-1][:300]
        return f"exit code {self.code}"


def mask(text: str, secrets: Sequence[str]) -> str:
    """Free text (docker-machine's output, error messages) with every secret value replaced."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


_SECRET_WORDS = frozenset({"token", "secret", "password", "passphrase", "key"})


def is_secret_flag(flag: str) -> bool:
    """Whether a docker-machine flag's value is a credential: a word of its name is one of token,
    secret, password, passphrase or key (`--digitalocean-access-token`, `--amazonec2-secret-key`)."""
    return bool(_SECRET_WORDS.intersection(flag.lstrip("-").lower().split("-")))


def masked_command(argv: Sequence[str], secrets: Sequence[str] = ()) -> str:
    """`argv` as a shell line with the value of every secret flag, and every argument that is a
    known secret, shown as `****`: whole arguments, so that other text stays as it is whatever
    the secrets look like (a one-letter secret does not turn `docker-machine` into `doc****er`)."""
    known = {s for s in secrets if s}
    shown: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            shown.append(MASK)
            hide_next = False
        elif arg.startswith("--") and is_secret_flag(arg.partition("=")[0]):
            name, eq, _ = arg.partition("=")
            shown.append(f"{name}={MASK}" if eq else arg)
            hide_next = not eq
        else:
            shown.append(MASK if arg in known else shlex.quote(arg))
    return " ".join(shown)


def remote_command(argv: Sequence[str]) -> str:
    """One string for the remote shell in which every argument stays exactly one argument."""
    return shlex.join(argv)


class DockerMachine:
    """Async wrapper over the `docker-machine` executable."""

    def __init__(
        self, executable: str, *, env: Mapping[str, str] | None = None, secrets: Sequence[str] = ()
    ) -> None:
        self.executable = executable
        self._env = {**os.environ, **env} if env is not None else None
        self.secrets = list(secrets)

    async def run(
        self,
        args: Sequence[str],
        *,
        stdin: bytes | None = None,
        timeout_s: float = QUICK_TIMEOUT_S,
        abort: asyncio.Event | None = None,
    ) -> Outcome:
        """Run `docker-machine <args>`; killed (whole process group) on timeout or abort."""
        proc = await asyncio.create_subprocess_exec(
            self.executable,
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._env,
            start_new_session=True,
        )
        talk = asyncio.ensure_future(proc.communicate(stdin))
        waiters: set[asyncio.Future[Any]] = {talk}
        aborted = asyncio.ensure_future(abort.wait()) if abort is not None else None
        if aborted is not None:
            waiters.add(aborted)
        try:
            done, _ = await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            self._kill(proc)
            talk.cancel()
            raise
        finally:
            if aborted is not None:
                aborted.cancel()
        if talk not in done:
            self._kill(proc)
            talk.cancel()
            with contextlib.suppress(BaseException):
                await proc.wait()
            if aborted is not None and aborted in done:
                raise Aborted(f"docker-machine {args[0]} interrupted")
            return Outcome(124, "", f"docker-machine {args[0]} timed out after {timeout_s:g} s")
        out, err = talk.result()
        return Outcome(
            proc.returncode if proc.returncode is not None else -1,
            mask(out.decode(errors="replace"), self.secrets),
            mask(err.decode(errors="replace"), self.secrets),
        )

    @staticmethod
    def _kill(proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    async def create(self, args: Sequence[str], name: str, abort: asyncio.Event | None = None) -> Outcome:
        """`docker-machine create <args> <name>` (args start with `--driver`)."""
        return await self.run(["create", *args, name], timeout_s=CREATE_TIMEOUT_S, abort=abort)

    async def ssh(
        self,
        name: str,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        abort: asyncio.Event | None = None,
    ) -> Outcome:
        """Run `argv` on the machine, quoted for its shell."""
        return await self.run(
            ["ssh", name, remote_command(argv)], stdin=stdin, timeout_s=SSH_TIMEOUT_S, abort=abort
        )

    async def ip_address(self, name: str) -> str:
        """`Driver.IPAddress` from `docker-machine inspect` (ValueError when missing)."""
        outcome = await self.run(["inspect", name])
        if not outcome.ok:
            raise ValueError(f"docker-machine inspect failed: {outcome.reason()}")
        try:
            data = orjson.loads(outcome.stdout)
            address = data["Driver"]["IPAddress"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise ValueError("docker-machine inspect gave no Driver.IPAddress") from None
        if not isinstance(address, str) or not address:
            raise ValueError("docker-machine inspect gave no Driver.IPAddress")
        return address

    async def remove(self, name: str) -> bool:
        """`docker-machine rm -y -f <name>`; True when the machine is gone."""
        outcome = await self.run(["rm", "-y", "-f", name])
        if not outcome.ok:
            log.warning(
                "Could not remove machine %s (%s); remove it by hand: docker-machine rm -y -f %s",
                name,
                outcome.reason(),
                name,
            )
        return outcome.ok
