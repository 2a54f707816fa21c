"""The ASGI app: MLflow's own scoring server for the loaded model (``mlflow.pyfunc.scoring_server.init``, a
FastAPI app from MLflow 2.21.0 on) with the V2 routes added beside its ``/invocations``."""

from __future__ import annotations

from typing import Any

from mlflow_kserve_server.dataplane import DataPlane
from mlflow_kserve_server.rest import Observer, RestRoutes


def build_app(plane: DataPlane, max_request_bytes: int, observe: Observer | None = None) -> Any:
    from mlflow.pyfunc import scoring_server

    app = scoring_server.init(plane.served.pyfunc)
    app.router.routes.extend(RestRoutes(plane, max_request_bytes, observe).routes())
    return app
