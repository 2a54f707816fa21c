"""`make demo`: the quick start in one go. Train the bundled iris model (once), serve it with `mlflow-kserve run`,
send examples/iris/request.json once the server says it is ready, check the answer, stop the server. A second run
reuses the model and its environment (run's cache): it is ready in seconds.

    .venv/bin/python examples/iris/demo.py [--work-dir .cache/demo] [--port 8080]

What `mlflow-kserve run` prints is shown as it comes; the request goes out when run logs "ready", so its answer
follows that line. Every flag of `run` can also be set by its environment variable (MLFLOW_KSERVE_CACHE_DIR, ...).
Exit code: 0 when the answer is right, else the failing step's.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
EXPECTED = [0, 2]  # setosa, virginica


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=Path(".cache/demo"), help="model and run's work dir")
    parser.add_argument("--port", type=int, default=8080, help="V2 REST port (gRPC and metrics: the next two)")
    args = parser.parse_args()
    work = args.work_dir.absolute()
    model = work / "iris-model"

    if (model / "MLmodel").is_file():
        step(f"the iris model trained before: {model} (remove it to train again)")
    else:
        step(f"training the iris model: examples/iris/train.py {model}")
        trained = subprocess.run([sys.executable, str(HERE / "train.py"), str(model)], check=False)
        if trained.returncode != 0:
            return trained.returncode

    command = [
        str(BIN / "mlflow-kserve"), "run", "--model-uri", str(model), "--name", "iris-model", "--port", str(args.port),
        "--grpc-port", str(args.port + 1), "--metrics-port", str(args.port + 2), "--work-dir", str(work / "run"),
    ]  # fmt: skip
    step("serving it: mlflow-kserve run (a first run builds the model's environment: a minute or two)")
    print("   " + " ".join(command[1:]), flush=True)
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ready = threading.Event()
    echo = threading.Thread(target=_echo, args=(server, ready), daemon=True)
    echo.start()
    try:
        while not ready.wait(0.2):
            if server.poll() is not None:
                echo.join()
                print(f"demo: mlflow-kserve run exited with code {server.returncode} before the model was ready")
                if server.returncode == 2:
                    print("demo: another port: make demo PORT=8090 (or examples/iris/demo.py --port 8090)")
                return server.returncode or 1
        return _ask(args.port)
    finally:
        if server.poll() is None:
            step("stopping the server (Ctrl-C, as you would)")
            server.send_signal(signal.SIGINT)
            server.wait(timeout=60)
        echo.join(timeout=5)


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def _echo(server: subprocess.Popen[str], ready: threading.Event) -> None:
    assert server.stdout is not None
    for line in server.stdout:
        print(line, end="", flush=True)
        if "[serve] ready in" in line:
            ready.set()


def _ask(port: int) -> int:
    body = (HERE / "request.json").read_bytes()
    url = f"http://127.0.0.1:{port}/v2/models/iris-model/infer"
    step(f"sending examples/iris/request.json to {url}")
    print(f"   request: {json.dumps(json.loads(body))}")
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    print(f"   answer:  {json.dumps(answer)}")
    data = answer["outputs"][0]["data"]
    if data != EXPECTED:
        print(f"demo: expected {EXPECTED} (setosa, virginica), got {data}")
        return 1
    print("   OK: setosa, virginica", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
