import sys

from mlflow_kserve_server.cli import main

if __name__ == "__main__":
    sys.exit(main())
