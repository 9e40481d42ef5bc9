"""One error hierarchy for the mesh.

Every error carries the exit code the task surface uses (DESIGN.md): 1 when the checked thing
failed (broken lineage, breaking change, failed build), 2 for bad usage or bad input. Messages are
one line and say what to do next.
"""

from __future__ import annotations


class MeshError(Exception):
    """Base class for every error the mesh raises on purpose."""

    exit_code: int = 2

    def __init__(self, message: str) -> None:
        # One line, always: CI logs and `invoke` print it as the cause.
        super().__init__(" ".join(str(message).split()))


# --- exit code 2: bad usage or bad input -------------------------------------------------------


class ConfigError(MeshError):
    """mesh.yml, dependencies.yml or an environment setting is missing or invalid."""


class InvalidNameError(MeshError):
    """A project, env or version name is not allowed (it could escape the registry root)."""


class ManifestError(MeshError):
    """A dbt artifact is missing, unreadable, of an unsupported schema version or inconsistent."""


class SchemaError(ManifestError):
    """A registry object (or what a publish is about to write) does not fit the registry's schema
    (mesh.registry.schema): one line naming the object, the node and the field."""


class RegistryError(MeshError):
    """The registry cannot be reached or answered with something unexpected."""


class NotFoundError(RegistryError):
    """An object the caller asked for is not in the registry."""


class ChecksumError(RegistryError):
    """An object read from the registry does not match the checksum stored with it."""


class CannotJudgeError(MeshError):
    """The gate could not judge a change (the working tree does not compile, its packages cannot be
    installed): exit 2, never the exit 1 of a breaking change."""


class SignatureError(ChecksumError):
    """An object of a project whose signing keys the mesh trusts is unsigned, signed by another
    key, or its signature does not verify (mesh.registry.signing)."""


class CredentialsError(MeshError):
    """Credentials or connection settings for a backend are missing."""


# --- exit code 1: the checked thing failed -------------------------------------------------------


class CheckFailedError(MeshError):
    """The thing checked did not pass: a failed build, broken lineage, a refused publish."""

    exit_code = 1


class AuditFailedError(CheckFailedError):
    """An audit of mesh.yml (a command beyond dbt's tests) failed: nothing is swapped or published."""


class BuildFailedError(CheckFailedError):
    """dbt reported an error or a failed test."""


class PublishRefusedError(CheckFailedError):
    """Write-audit-publish refused: the audit did not pass."""


class ConflictError(RegistryError):
    """A compare-and-swap on `latest` lost a race to another publisher."""

    exit_code = 1


class LineageError(CheckFailedError):
    """A consumer's cross-project edges do not resolve to public upstream models."""


class BreakingChangeError(CheckFailedError):
    """A change breaks a published contract that registered consumers use."""


class SyncError(CheckFailedError):
    """A consumer references upstream nodes that its upstream does not publish."""


# --- exit code 130 / 143: stopped by a signal ------------------------------------------------------


class Interrupted(MeshError):
    """Ctrl-C (SIGINT, exit 130) or SIGTERM (exit 143) stopped a step; nothing is half-written."""

    exit_code = 130

    def __init__(self, step: str, project: str | None = None, signum: int = 2) -> None:
        self.step = step
        self.project = project
        self.signum = signum
        self.exit_code = 128 + signum
        where = f" ({project})" if project else ""
        super().__init__(f"interrupted during {step}{where}")
