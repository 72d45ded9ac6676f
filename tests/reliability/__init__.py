"""Reliability and security suite: faults, secrets, least privilege, gating, hostility, load."""
