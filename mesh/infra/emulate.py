"""A prod rehearsal without an account: S3 and Snowflake emulators on loopback.

`up` starts moto's S3 server and fakesnow's Snowflake server (both from the venv) on free loopback
ports, detached from the caller so they outlive `invoke emulate.up`; waits until each answers;
creates the registry bucket and the databases and schemas `snowflake_sql/03_databases.sql` would
create; generates an RSA key pair for key-pair auth; and writes `.mesh/emulate.env`, the
environment that points the unchanged prod target at them. `run_with_env` runs one command in that
environment (`invoke emulate.run -- invoke mesh --target prod`) and leaves the calling shell as it
was; people who source the file instead get `mesh_emulate_off` from it, a shell function that
unsets every variable it exported. `down` stops exactly the processes `up` started, recorded with
their start time in `.mesh/emulate.pids` so a recycled pid is never signalled, removes the env file
and prints the `unset` line for a shell that sourced it.

Nothing here is used on the prod path itself: the profile, the registry and dbt-loom reach the
emulators only through the standard settings (`SNOWFLAKE_HOST/PORT/PROTOCOL`,
`AWS_ENDPOINT_URL_S3`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mesh.core.errors import ConfigError, MeshError
from mesh.core.surface import command, hint, install_hint
from mesh.project.config import CONFIG_FILE, load_mesh, read_yaml

STATE_DIR = Path(".mesh")
EMULATE_DIR = STATE_DIR / "emulate"
ENV_FILE = STATE_DIR / "emulate.env"
PIDS_FILE = STATE_DIR / "emulate.pids"
KEY_FILE = "rsa_key.p8"
DEFAULT_REGISTRY = "s3://mesh-rehearsal/mesh"
DEFAULT_DATABASES = ("DBT_UP_PROD", "DBT_DOWN_PROD", "DBT_DOWN_LOOM_PROD")
SCHEMAS = ("RAW", "STAGING", "MARTS")
REGION = "us-east-1"
# moto accepts any key; these only stop boto3 from looking for real credentials.
DUMMY_AWS_KEYS = {"AWS_ACCESS_KEY_ID": "emulate", "AWS_SECRET_ACCESS_KEY": "emulate"}
ACCOUNT = "emulated"
USER = "MESH_REHEARSAL"
HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
START_ATTEMPTS = 3
_IDENTIFIER_RE = re.compile(r"[A-Z_][A-Z0-9_$]*", re.ASCII)
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", re.ASCII)
# Children started by this process, so `down` in the same process also reaps them.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class EmulatorError(ConfigError):
    """An emulator is missing, did not start, or is already running."""


def bin_path(name: str) -> Path:
    """An executable of the venv this Python runs in (not resolved: the venv's bin is the point)."""
    return Path(sys.executable).parent / name


# --- key pair --------------------------------------------------------------------------------


def generate_key_pair(path: Path, passphrase: str | None = None) -> Path:
    """Write an RSA private key (PKCS#8 PEM, mode 0600, encrypted if `passphrase`) to `path` and
    its public key beside it (`.pub`, what `ALTER USER ... SET RSA_PUBLIC_KEY` takes)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode("utf-8"))
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    path.with_suffix(".pub").write_bytes(public)
    return path


# --- processes -------------------------------------------------------------------------------


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    return text[text.rindex(")") + 2 :].split()


def process_start_time(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot on Linux, `ps` elsewhere), or None if
    there is no such process. With the pid it identifies one process: pids are recycled."""
    if Path("/proc/self/stat").exists():
        fields = _proc_stat(pid)
        return fields[19] if fields else None
    try:
        out = subprocess.run(
            ["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True, check=False
        )
    except OSError:
        return None
    return " ".join(out.stdout.split()) or None


def _reap(pid: int) -> None:
    """Collect the exit status if `pid` is our child, so it does not linger as a zombie."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            _CHILDREN.pop(pid, None)
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def is_running(pid: int, start_time: str) -> bool:
    """Whether the process `pid` that started at `start_time` still runs (zombies do not)."""
    _reap(pid)
    if process_start_time(pid) != start_time:
        return False
    fields = _proc_stat(pid)
    return not (fields and fields[0] in ("Z", "X"))


@dataclass
class ServerProcess:
    """One emulator process `up` started."""

    name: str
    pid: int
    start_time: str
    port: int
    url: str
    argv: list[str]
    log: str

    def running(self) -> bool:
        return is_running(self.pid, self.start_time)


def _answers_http(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
    try:
        with opener.open(url, timeout=1.0):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the server is up
    except OSError:
        return False


def start_server(
    name: str,
    argv_for_port: Callable[[int], list[str]],
    log: Path,
    probe_path: str = "/",
) -> ServerProcess:
    """Start a server detached (own session, output to `log`) on a free loopback port; wait until
    it answers HTTP. A port taken between picking and binding is retried on another one."""
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for _ in range(START_ATTEMPTS):
        port = free_port()
        argv = argv_for_port(port)
        if not Path(argv[0]).exists():
            raise EmulatorError(f"{argv[0]} is missing: install the emulators ({install_hint('emulate')})")
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        _CHILDREN[proc.pid] = proc
        start_time = process_start_time(proc.pid) or ""
        server = ServerProcess(
            name, proc.pid, start_time, port, f"http://{HOST}:{port}", argv, str(log)
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            if _answers_http(server.url + probe_path):
                return server
            time.sleep(0.1)
        stop_server(server)
    tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
    raise EmulatorError(
        f"{name} emulator did not start ({' '.join(tail) or 'no output'}): see {log}"
    )


def stop_server(server: ServerProcess, timeout: float = STOP_TIMEOUT_S) -> str:
    """Stop exactly this process (SIGTERM, wait, SIGKILL); say what happened."""
    if not server.running():
        if process_start_time(server.pid) is not None:
            return f"{server.name}: pid {server.pid} is another process now, left alone"
        return f"{server.name}: pid {server.pid} was not running"
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, timeout)):
        try:
            os.kill(server.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not server.running():
                _CHILDREN.pop(server.pid, None)
                how = "stopped" if sig == signal.SIGTERM else "killed"
                return f"{server.name}: {how} pid {server.pid}"
            time.sleep(0.05)
    if server.running():
        raise EmulatorError(f"{server.name}: pid {server.pid} survived SIGKILL")
    return f"{server.name}: stopped pid {server.pid}"


def moto_argv(port: int) -> list[str]:
    return [str(bin_path("moto_server")), "-H", HOST, "-p", str(port)]


def fakesnow_argv(port: int) -> list[str]:
    return [str(bin_path("fakesnow")), "-s", "--host", HOST, "-p", str(port)]


# --- what to create --------------------------------------------------------------------------


def registry_for_rehearsal(root: Path) -> str:
    """The prod registry URL of mesh.yml (after `${VAR}` expansion and MESH_REGISTRY), if it is
    an s3:// URL with a valid bucket name; otherwise DEFAULT_REGISTRY."""

    try:
        url = load_mesh(root, "prod").target.registry
    except MeshError:
        return DEFAULT_REGISTRY
    bucket = url[len("s3://") :].partition("/")[0] if url.startswith("s3://") else ""
    return url.rstrip("/") if _BUCKET_RE.fullmatch(bucket) else DEFAULT_REGISTRY


def databases_for_rehearsal(root: Path) -> list[str]:
    """The project databases of mesh.yml's `snowflake.projects` block, else the defaults."""

    try:
        raw = read_yaml(root / CONFIG_FILE, CONFIG_FILE)
    except MeshError:
        return list(DEFAULT_DATABASES)
    projects = ((raw or {}).get("snowflake") or {}).get("projects") or {}
    found = [
        str(spec["database"]).upper()
        for spec in projects.values()
        if isinstance(spec, dict) and isinstance(spec.get("database"), str)
    ]
    bad = [db for db in found if not _IDENTIFIER_RE.fullmatch(db)]
    if bad:
        raise ConfigError(f"mesh.yml snowflake.projects: {bad[0]!r} is not a plain identifier")
    return sorted(set(found)) or list(DEFAULT_DATABASES)


def create_bucket(endpoint: str, bucket: str) -> None:
    """Create `bucket` on the S3 emulator (idempotent)."""
    import boto3

    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=DUMMY_AWS_KEYS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_AWS_KEYS["AWS_SECRET_ACCESS_KEY"],
    )
    existing = {b.get("Name") for b in client.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        client.create_bucket(Bucket=bucket)


def create_databases(port: int, key_path: Path, databases: list[str]) -> None:
    """Create the databases and RAW/STAGING/MARTS schemas on the Snowflake emulator, connecting
    with key-pair auth as the profile does (fakesnow accepts any signature; the client still
    has to load the key and sign)."""
    import snowflake.connector

    for name in databases:
        if not _IDENTIFIER_RE.fullmatch(name):
            raise ConfigError(f"{name!r} is not a plain Snowflake identifier")
    conn = snowflake.connector.connect(
        account=ACCOUNT,
        user=USER,
        private_key_file=str(key_path),
        host=HOST,
        port=port,
        protocol="http",
        login_timeout=30,
        network_timeout=30,
    )
    try:
        cursor = conn.cursor()
        for database in databases:
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS {database}")
            for schema in SCHEMAS:
                cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {database}.{schema}")
    finally:
        conn.close()


def emulator_env(s3_url: str, registry: str, snowflake_port: int, key_path: Path) -> dict[str, str]:
    """The variables that point the prod target at the emulators. No secret: the keys are dummies
    and the private key is referenced by path."""
    return {
        "AWS_ENDPOINT_URL_S3": s3_url,
        **DUMMY_AWS_KEYS,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "MESH_REGISTRY": registry,
        "SNOWFLAKE_ACCOUNT": ACCOUNT,
        "SNOWFLAKE_USER": USER,
        "SNOWFLAKE_PRIVATE_KEY_PATH": str(key_path),
        "SNOWFLAKE_HOST": HOST,
        "SNOWFLAKE_PORT": str(snowflake_port),
        "SNOWFLAKE_PROTOCOL": "http",
        "MESH_TARGET": "prod",
        # fakesnow runs the clone of an audit build but not the swap, nor any GRANT: off here.
        "MESH_WAP": "false",
        "MESH_GRANTS": "false",
    }


OFF_FUNCTION = "mesh_emulate_off"


def run_advice() -> str:
    """How to run the mesh against the emulators, on the surface in use."""
    return command("emulate.run", "--", command("mesh", "--target", "prod"))


def unset_line(names: list[str] | None = None) -> str:
    """The shell line that drops what `.mesh/emulate.env` exported (default: every variable
    `emulator_env` sets)."""
    names = names if names is not None else list(emulator_env("", "", 0, Path()))
    return "unset " + " ".join(names)


def write_env_file(path: Path, env: Mapping[str, str]) -> None:
    """The environment as `export` lines, and `mesh_emulate_off`, which unsets them again."""
    unset = unset_line(list(env))
    lines = [
        f"# Written by {hint('emulate.up')}; removed by {hint('emulate.down')}.",
        f"# Run one command with it, nothing else changes in your shell: {run_advice()}",
        f"# Or source it (`. {ENV_FILE}`); then, before the shell does anything else, run",
        f"# `{OFF_FUNCTION}` (defined below) or: {unset}",
    ]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
    lines.append(f"{OFF_FUNCTION}() {{ {unset}; unset -f {OFF_FUNCTION}; }}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_env_file(path: Path) -> dict[str, str]:
    """The `export NAME=value` lines of an env file written by `write_env_file`."""
    env: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            env[name] = shlex.split(value)[0] if value else ""
    return env


# --- up / down -------------------------------------------------------------------------------


@dataclass
class Emulation:
    """The running emulators and the environment that points the prod target at them."""

    root: Path
    servers: list[ServerProcess]
    registry: str
    databases: list[str]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def env_file(self) -> Path:
        return self.root / ENV_FILE

    def server(self, name: str) -> ServerProcess:
        return next(s for s in self.servers if s.name == name)

    def summary(self) -> list[str]:
        s3, sf = self.server("s3"), self.server("snowflake")
        return [
            f"emulate: S3 (moto) at {s3.url}, pid {s3.pid}; registry {self.registry}",
            f"emulate: Snowflake (fakesnow) at {sf.url}, pid {sf.pid}; databases "
            f"{', '.join(self.databases)} with {', '.join(SCHEMAS)}",
            f"emulate: run commands against them with `{run_advice()}` (your shell stays as it "
            f"is; the environment is in {ENV_FILE}); stop them with {hint('emulate.down')}",
        ]


def _read_pids(path: Path) -> list[ServerProcess]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [ServerProcess(**item) for item in data["processes"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EmulatorError(
            f"{path} is unreadable ({exc}); stop the emulators by pid and remove it"
        ) from exc


def _write_pids(path: Path, servers: list[ServerProcess]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body: dict[str, Any] = {"processes": [asdict(s) for s in servers]}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def up(root: Path) -> Emulation:
    """Start both emulators, create bucket, databases and key, write the env and pids files."""
    root = Path(root).resolve()
    pids = root / PIDS_FILE
    if pids.exists():
        alive = [s for s in _read_pids(pids) if s.running()]
        if alive:
            listed = ", ".join(f"{s.name} pid {s.pid}" for s in alive)
            raise EmulatorError(
                f"emulators already running ({listed}): use them with `{run_advice()}`, or "
                f"stop them with {hint('emulate.down')}"
            )
        pids.unlink()
    directory = root / EMULATE_DIR
    key = generate_key_pair(directory / KEY_FILE)
    registry = registry_for_rehearsal(root)
    databases = databases_for_rehearsal(root)
    servers: list[ServerProcess] = []
    try:
        servers.append(start_server("s3", moto_argv, directory / "moto.log", "/moto-api/"))
        _write_pids(pids, servers)
        servers.append(start_server("snowflake", fakesnow_argv, directory / "fakesnow.log"))
        _write_pids(pids, servers)
        s3, snowflake = servers
        create_bucket(s3.url, registry[len("s3://") :].partition("/")[0])
        create_databases(snowflake.port, key, databases)
    except Exception as exc:
        for server in reversed(servers):
            stop_server(server)
        pids.unlink(missing_ok=True)
        if isinstance(exc, MeshError):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise EmulatorError(f"emulators did not come up: {first}; logs in {directory}") from exc
    env = emulator_env(s3.url, registry, snowflake.port, key)
    write_env_file(root / ENV_FILE, env)
    return Emulation(root, servers, registry, databases, env)


def down(root: Path) -> list[str]:
    """Stop the processes `up` recorded (only those, and only if their start time matches),
    remove the pids and env files; one line per action, and the `unset` line for a shell that
    sourced the env file."""
    root = Path(root).resolve()
    pids = root / PIDS_FILE
    lines: list[str] = []
    if pids.exists():
        for server in _read_pids(pids):
            lines.append(stop_server(server))
        pids.unlink()
    else:
        lines.append(f"no {PIDS_FILE}: no emulator to stop")
    env_file = root / ENV_FILE
    exported: dict[str, str] = {}
    if env_file.exists():
        with contextlib.suppress(OSError, ValueError):
            exported = read_env_file(env_file)
        env_file.unlink()
        lines.append(f"removed {ENV_FILE}")
    if exported or _sourced(os.environ):
        who = "this shell" if _sourced(os.environ) else "a shell that sourced it"
        lines.append(
            f"{who} still points the prod target at the stopped emulators: run "
            f"`{OFF_FUNCTION}` there, or: {unset_line(list(exported) or None)}"
        )
    return lines


def _sourced(environ: Mapping[str, str]) -> bool:
    """Whether `environ` looks like a shell that sourced the env file: the emulator's Snowflake
    account and S3 endpoint on loopback."""
    endpoint = environ.get("AWS_ENDPOINT_URL_S3", "")
    return environ.get("SNOWFLAKE_ACCOUNT") == ACCOUNT and endpoint.startswith(f"http://{HOST}:")


# --- run one command in the emulators' environment ----------------------------------------------


def remainder_argv(argv: list[str], remainder: str) -> list[str]:
    """The command after `--` on invoke's command line, word for word. invoke only keeps it
    joined by spaces (`Context.remainder`), which loses quoting; `argv` (sys.argv) still has it
    when it matches."""
    if "--" in argv:
        words = argv[argv.index("--") + 1 :]
        if " ".join(words) == remainder:
            return words
    return shlex.split(remainder)


def run_with_env(root: Path, argv: list[str]) -> int:
    """Run `argv` with the environment of `.mesh/emulate.env` added to this one (and the venv's
    bin first on PATH, so `invoke` and `mesh` resolve without an activated venv); return its exit
    code. Nothing changes in the calling process or shell."""
    root = Path(root).resolve()
    if not argv:
        raise EmulatorError(f"give the command after --, e.g. `{run_advice()}`")
    env_file, pids = root / ENV_FILE, root / PIDS_FILE
    if not env_file.exists():
        raise EmulatorError(f"no {ENV_FILE}: start the emulators first with {hint('emulate.up')}")
    stopped = [s for s in _read_pids(pids) if not s.running()] if pids.exists() else []
    if stopped or not pids.exists():
        which = ", ".join(f"{s.name} pid {s.pid}" for s in stopped) or f"no {PIDS_FILE}"
        raise EmulatorError(
            f"the emulators are not running ({which}): restart them with {hint('emulate.down')} "
            f"and {hint('emulate.up')}"
        )
    env = {**os.environ, **read_env_file(env_file)}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    try:
        proc = subprocess.Popen(argv, env=env)
    except OSError as exc:
        raise EmulatorError(f"cannot run {argv[0]!r}: {exc.strerror or exc}") from exc
    try:
        code = proc.wait()
    except KeyboardInterrupt:  # the child got the same Ctrl-C: let it finish its way
        code = proc.wait()
    return 128 - code if code < 0 else code
