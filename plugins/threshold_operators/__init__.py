"""Storefence: e-commerce threshold alerts on Apache Airflow.

Rooms of the package:
- ``warehouse``  - the canonical schema, the warehouse hook and bulk loading;
- ``simulator``  - a realistic, deterministic shop with labelled incidents;
- ``shop_api``   - the simulated shop served over HTTP, as a platform API would;
- ``cli``        - the ``storefence`` command.

Nothing heavy is imported here: DAG files import this package at parse time.
"""

__version__ = "0.1.0"
