"""The one compiled part of tlswatch: the pcap fast path (tlswatch/capture/_bulkbook.c).

Everything else is in pyproject.toml. The extension is optional: without a C compiler the
install still succeeds and ``tlswatch analyse`` uses its pure-Python path (same results,
slower). docs/capture.md says what the extension does.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("tlswatch.capture._bulkbook", ["tlswatch/capture/_bulkbook.c"],
                             optional=True)])
