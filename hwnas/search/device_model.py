"""What a search predicts latency with: the device's table, its missing blocks measured and its space's
calibration fitted first where the device allows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hwnas.config import SearchConfig
from hwnas.distributed import Ranks
from hwnas.errors import HwnasError

if TYPE_CHECKING:
    from hwnas.search.runner import Reporter


def open_latency_model(config: SearchConfig, space: Any, ranks: Ranks, reporter: Reporter):
    """The device's latency model for `space`: its table (refused when it serves another device), the blocks it lacks
    measured first, and the calibration of this space and resolution fitted first when there is none (local
    devices, when allowed)."""
    from hwnas.device import get_device
    from hwnas.lut.build import build_lut
    from hwnas.lut.calibrate import calibrate_device
    from hwnas.lut.device_table import device_lut_path, open_device_model

    device = get_device(config.device, config.devices_file)
    path = device_lut_path(device, config.lut)
    specs = space.specs()
    model = open_device_model(device, path, space=space.name, force=config.force) if path.exists() else None
    missing = len(model.table.missing(s.key for s in specs)) if model else len(specs)
    lut_args = (f"--device {device.name} --space {config.space} --resolution {space.resolution} --classes "
                f"{space.num_classes}" + (f" --lut {path}" if config.lut else ""))  # what a fix command is run on
    if missing:
        from hwnas.spaces.files import is_space_file

        if not (device.is_local and config.profile_missing):
            why = "" if device.is_local else f" (device '{device.name}' is remote)"
            fix = ("rerun without --no-profile-missing to measure them here" if is_space_file(config.space) else
                   f"run `hwnas profile {lut_args}` first")
            raise HwnasError(f"{path}: {missing} of the {len(specs)} blocks space '{config.space}' needs at "
                             f"{space.resolution}px are not measured{why}; {fix}")
        if ranks.is_main:
            reporter.note(f"{path}: measuring {missing} missing block(s) on '{device.name}' first")
            reporter.profiling(len(specs))
            build_lut(device, specs, path, force=config.force,
                      on_block=lambda spec, measured: reporter.profiled(spec.key, measured))
        ranks.barrier()
        model = open_device_model(device, path, space=space.name, force=config.force)
    if space.resolution not in model.calibrations:
        if device.is_local and config.calibrate_networks and config.profile_missing:
            if ranks.is_main:
                reporter.note(f"{path}: fitting the calibration of space {space.name} at {space.resolution}px on "
                              f"{config.calibrate_networks} networks measured on '{device.name}' first")
                calibrate_device(device, space, path, networks=config.calibrate_networks, force=config.force)
            ranks.barrier()
            model = open_device_model(device, path, space=space.name, force=config.force)
        elif ranks.is_main:
            reporter.note(f"{path}: no calibration of space {space.name} at {space.resolution}px, so latencies are "
                          "plain sums of blocks timed alone (often tens of percent off a whole network); "
                          f"`hwnas lut calibrate {lut_args}` fits the correction")
    return model, path
