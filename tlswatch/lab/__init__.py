"""Emulated censoring network on this machine (loopback only: 127.0.0.0/8 and ::1).

Nothing outside ``tlswatch.lab`` and ``tlswatch.testing`` may import this package (DESIGN §2):
a detector that knows the lab's target list or CA names proves nothing.

What runs (addresses in :mod:`tlswatch.lab.addresses`, all on one TCP port):

- origin servers for every lab domain (2019 targets, untargeted, ``.kz`` in-country hosts,
  blocked and sslsplit-routed names), chains from the lab "public" CA written to a store file;
- a censored resolver and a control resolver (UDP+TCP);
- the middlebox: the 2019 KZ interceptor (SNI on the target list -> forged chain + relay,
  else splice) and the SNI blockers (reset, drop, alert, blockpage); ``refused`` = no listener;
- a blockpage server, hostile servers (silent, slow, garbage, hugechain, midclose);
- sslsplit as a second, independent interceptor when installed.

``Lab.describe()`` keys: schema, running, seed, now, address_prefix, port, resolver,
control_resolver, workdir, store, public_root, targets, incountry, domains (per name: role,
path, origin, middlebox, answer, control_answer, blocker), blockers, blockpage, hostile,
interceptor, sslsplit.
"""

from tlswatch.lab.addresses import AddressPlan, is_lab_safe
from tlswatch.lab.config import (
    BLOCK_METHODS,
    DEFAULT_BLOCKERS,
    DEFAULT_INCOUNTRY,
    DEFAULT_SSLSPLIT_DOMAINS,
    DEFAULT_UNTARGETED,
    HOSTILE_KINDS,
    LabConfig,
    LabConfigError,
    default_targets_path,
    load_config,
    load_targets,
)
from tlswatch.lab.lab import SCHEMA, Lab, LabError, hostile_domain, run_lab_forever, running_lab

__all__ = [
    "BLOCK_METHODS",
    "DEFAULT_BLOCKERS",
    "DEFAULT_INCOUNTRY",
    "DEFAULT_SSLSPLIT_DOMAINS",
    "DEFAULT_UNTARGETED",
    "HOSTILE_KINDS",
    "SCHEMA",
    "AddressPlan",
    "Lab",
    "LabConfig",
    "LabConfigError",
    "LabError",
    "default_targets_path",
    "hostile_domain",
    "is_lab_safe",
    "load_config",
    "load_targets",
    "run_lab_forever",
    "running_lab",
]
