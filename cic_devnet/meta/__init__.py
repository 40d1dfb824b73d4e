"""The CIC metadata server (devnet service): JSON documents under sha256 pointers.

Run it with ``python -m cic_devnet.meta``, or from Python::

    from cic_devnet.meta.process import start_meta_server
    server = start_meta_server(db="meta.db")      # free port, random token
    ...
    server.stop()
"""
