"""Installs or uninstalls charts/suborg into the cluster KUBECONFIG points at, with the real
Helm v4 library (helm-python-sdk), for the end-to-end test of the chart's RBAC.
Usage: cluster.py install|uninstall NAMESPACE RELEASE. Prints one JSON object: {"ok": ...} or
{"error": "..."}."""

import json
import os
import sys

import helm_python as helm

CHART = "charts/suborg"


def main() -> None:
    action, namespace, release = sys.argv[1], sys.argv[2], sys.argv[3]
    kubeconfig = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    config = helm.Config(kubeconfig_path=kubeconfig, namespace=namespace)
    try:
        if action == "install":
            # No kubelet is needed: the test runs the controller itself, with the
            # ServiceAccount's token, so the Deployment's pod never has to start.
            config.install(
                helm.Chart.load(CHART),
                release,
                {},
                namespace=namespace,
                create_namespace=True,
            )
        else:
            config.uninstall(release, ignore_not_found=True)
        print(json.dumps({"ok": action}))
    except helm.HelmError as e:
        print(json.dumps({"error": str(e)}))
    finally:
        config.close()


if __name__ == "__main__":
    main()
