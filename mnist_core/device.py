"""Turning a device setting (`auto`, `cpu`, `cuda`, `cuda:N`) into a usable torch device."""

import torch


class DeviceUnavailableError(ValueError):
    """The requested device does not exist on this machine or is not a valid name."""


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when available; an explicit CUDA device must really exist."""
    name = name.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise DeviceUnavailableError(f"unknown device {name!r}: expected auto, cpu, cuda or cuda:N") from error
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise DeviceUnavailableError(f"unsupported device {name!r}: expected auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise DeviceUnavailableError(f"device {name!r} requested but CUDA is not available on this machine")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceUnavailableError(
            f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
        )
    return device
