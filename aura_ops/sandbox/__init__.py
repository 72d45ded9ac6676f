"""The built-in sandbox: a real small service, a real PostgreSQL, and injectable faults."""

from aura_ops.sandbox.control import Sandbox, TrafficStats, free_port
from aura_ops.sandbox.faults import FAULTS, Fault, faults_for

__all__ = ["FAULTS", "Fault", "Sandbox", "TrafficStats", "faults_for", "free_port"]
