"""checkov checks for docker compose services, loaded with `checkov --external-checks-dir scripts/checkov`.

checkov has no docker compose framework: on its own it runs no check at all on docker-compose.yml.
These checks ask of each compose service what checkov's Kubernetes checks ask of the pod in
deploy/k8s (the ids in brackets), so both ways of running the image are held to the same rules.
They run in checkov's generic yaml framework, on every service of any YAML file with `services`;
skip one for a service with a `# checkov:skip=CKV_COMPOSE_N: reason` comment inside that service.
"""

import re
from abc import abstractmethod
from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.yaml_doc.base_yaml_check import BaseYamlCheck
from checkov.yaml_doc.enums import BlockType


class ComposeServiceCheck(BaseYamlCheck):
    def __init__(self, name: str, id: str, category: CheckCategories) -> None:
        super().__init__(
            name=name, id=id, categories=(category,), supported_entities=("services.*",), block_type=BlockType.ARRAY
        )

    def scan_entity_conf(self, conf: dict[str, Any], entity_type: str) -> tuple[CheckResult, dict[str, Any]]:
        if not isinstance(conf, dict):
            return CheckResult.UNKNOWN, conf
        return (CheckResult.PASSED if self.holds(conf) else CheckResult.FAILED), conf

    @abstractmethod
    def holds(self, service: dict[str, Any]) -> bool:
        """Whether `service` (its compose mapping) meets the check."""


class ReadOnlyRootFilesystem(ComposeServiceCheck):
    def __init__(self) -> None:
        super().__init__(
            "Compose service has a read-only root filesystem [CKV_K8S_22]",
            "CKV_COMPOSE_1",
            CheckCategories.GENERAL_SECURITY,
        )

    def holds(self, service: dict[str, Any]) -> bool:
        return service.get("read_only") is True


class DropsAllCapabilities(ComposeServiceCheck):
    def __init__(self) -> None:
        super().__init__(
            "Compose service drops all capabilities and adds none [CKV_K8S_28, CKV_K8S_37]",
            "CKV_COMPOSE_2",
            CheckCategories.GENERAL_SECURITY,
        )

    def holds(self, service: dict[str, Any]) -> bool:
        return "ALL" in (service.get("cap_drop") or []) and not service.get("cap_add")


class NoNewPrivileges(ComposeServiceCheck):
    def __init__(self) -> None:
        super().__init__(
            "Compose service cannot gain privileges (no-new-privileges) [CKV_K8S_20]",
            "CKV_COMPOSE_3",
            CheckCategories.GENERAL_SECURITY,
        )

    def holds(self, service: dict[str, Any]) -> bool:
        return any(
            option in ("no-new-privileges", "no-new-privileges:true") for option in service.get("security_opt") or []
        )


class NotPrivilegedNoHostNamespaces(ComposeServiceCheck):
    def __init__(self) -> None:
        super().__init__(
            "Compose service is not privileged and shares no host namespace [CKV_K8S_16 to CKV_K8S_19]",
            "CKV_COMPOSE_4",
            CheckCategories.GENERAL_SECURITY,
        )

    def holds(self, service: dict[str, Any]) -> bool:
        shared = [service.get(key) for key in ("network_mode", "pid", "ipc", "userns_mode")]
        return service.get("privileged") is not True and "host" not in shared


class CpuAndMemoryLimits(ComposeServiceCheck):
    def __init__(self) -> None:
        super().__init__(
            "Compose service has CPU and memory limits [CKV_K8S_11, CKV_K8S_13]",
            "CKV_COMPOSE_5",
            CheckCategories.GENERAL_SECURITY,
        )

    def holds(self, service: dict[str, Any]) -> bool:
        limits = ((service.get("deploy") or {}).get("resources") or {}).get("limits") or {}
        return bool(limits.get("cpus") or service.get("cpus")) and bool(
            limits.get("memory") or service.get("mem_limit")
        )


class HasHealthcheck(ComposeServiceCheck):
    def __init__(self) -> None:
        super().__init__(
            "Compose service has a healthcheck [CKV_DOCKER_2, CKV_K8S_8]",
            "CKV_COMPOSE_6",
            CheckCategories.GENERAL_SECURITY,
        )

    def holds(self, service: dict[str, Any]) -> bool:
        healthcheck = service.get("healthcheck") or {}
        return bool(healthcheck.get("test")) and healthcheck.get("disable") is not True


class PublishesOnANamedAddress(ComposeServiceCheck):
    """Docker publishes on 0.0.0.0 unless told otherwise, past the host's own firewall rules."""

    def __init__(self) -> None:
        super().__init__(
            "Compose service publishes ports on an address it names", "CKV_COMPOSE_7", CheckCategories.NETWORKING
        )

    def holds(self, service: dict[str, Any]) -> bool:
        for port in service.get("ports") or []:
            if isinstance(port, dict):
                if not port.get("host_ip"):
                    return False
            # HOST_IP:HOST_PORT:CONTAINER_PORT names the address; ${VAR:-default} holds colons of its own.
            elif re.sub(r"\$\{[^}]*\}", "VAR", str(port)).count(":") < 2:
                return False
        return True


checks = [
    ReadOnlyRootFilesystem(),
    DropsAllCapabilities(),
    NoNewPrivileges(),
    NotPrivilegedNoHostNamespaces(),
    CpuAndMemoryLimits(),
    HasHealthcheck(),
    PublishesOnANamedAddress(),
]
