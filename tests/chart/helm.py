"""Lints and renders charts/suborg with the real Helm v4 library (helm-python-sdk), for the
Rust tests in tests/integration/chart.rs. Usage: helm.py VALUES.yaml. Prints one JSON object:
{"lint": {...}, "manifests": {template: text}} or {"error": "..."}."""

import json
import sys

import helm_python as helm

CHART = "charts/suborg"


def main() -> None:
    with open(sys.argv[1]) as f:
        values = helm.values_from_yaml(f.read()) or {}
    try:
        lint = helm.lint(CHART, values, strict=True, namespace="suborg-system")
        chart = helm.Chart.load(CHART)
        chart.validate_schema(values)
        manifests = chart.render(
            values, name="suborg", namespace="suborg-system", is_install=True
        )
        print(json.dumps({"lint": lint, "manifests": manifests}))
    except helm.HelmError as e:
        print(json.dumps({"error": str(e)}))


if __name__ == "__main__":
    main()
