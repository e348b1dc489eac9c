"""Latency lookup tables: schema, building, lookup, calibration and validation."""

from hwnas.lut.model import Calibration, LatencyModel
from hwnas.lut.schema import COLUMNS, SCHEMA_VERSION, UNIT
from hwnas.lut.table import LatencyTable, default_lut_path

__all__ = ["COLUMNS", "Calibration", "LatencyModel", "LatencyTable", "SCHEMA_VERSION", "UNIT",
           "default_lut_path"]
