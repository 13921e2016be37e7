"""The simulated shop served over HTTP, as an e-commerce platform's API would serve it.

A DuckDB file whose tables follow ``warehouse.schema`` is served read-only on loopback, one
endpoint per table, with keyset pagination, ``updated_since`` filters, an optional bearer
token and injectable faults (rate limiting, 5xx), so extract DAGs can be tested against a real
HTTP server.

- ``faults`` - ``FaultPolicy``: the token-bucket rate limit and random server errors;
- ``app``    - ``create_app``: the FastAPI application;
- ``versions`` - which version of each row is served at ``as_of`` (a platform's history);
- ``server`` - ``ShopApiServer`` (background thread, for tests) and ``serve`` (for the CLI).

Nothing is imported here: FastAPI and uvicorn load only when the server is used.
"""
