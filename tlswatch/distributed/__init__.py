"""Scale-out on a Dask cluster (``pip install tlswatch[distributed]``).

:mod:`.cluster` opens a client (a local cluster of worker processes on 127.0.0.1, or an
existing scheduler); :mod:`.analyse` spreads capture files across its workers. Dask is
imported only when used, so ``tlswatch`` works without it.
"""
