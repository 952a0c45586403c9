"""``conveyor target add|list|remove``: where apps can be deployed besides this machine."""

from __future__ import annotations

import click

from conveyor.cli.client import connect
from conveyor.errors import UsageError

__all__ = ["target_group"]


@click.group("target")
def target_group() -> None:
    """Deployment targets: `local` (this machine, the default) and Kubernetes clusters."""


@target_group.command("add")
@click.argument("name")
@click.option(
    "--kubernetes", "kubernetes", is_flag=True, help="The target is a Kubernetes cluster."
)
@click.option("--context", default=None, help="The kubeconfig context (default: the current one).")
@click.option("--namespace", required=True, help="The namespace apps are deployed to.")
@click.option("--registry", required=True, help="Where images are pushed: HOST[:PORT]/REPO.")
@click.option("--artifact-root", default=None, help="Where pods read models: s3://BUCKET/PREFIX.")
@click.option(
    "--artifact-secret",
    default=None,
    metavar="NAME",
    help="The Secret holding the artifact root's credentials (AWS_ACCESS_KEY_ID, "
    "AWS_SECRET_ACCESS_KEY; optional AWS_SESSION_TOKEN, AWS_ENDPOINT_URL, AWS_REGION); "
    "default: the pods' own identity.",
)
@click.option(
    "--routing",
    type=click.Choice(["ingress", "gateway"]),
    default="ingress",
    show_default=True,
    help="Routes as an Ingress or a Gateway API HTTPRoute.",
)
@click.option("--ingress-class", default=None, help="The IngressClass (default: the cluster's).")
@click.option("--gateway", default=None, help="The Gateway HTTPRoutes attach to: [NS/]NAME.")
@click.option(
    "--base-image",
    default=None,
    help="The image apps are built on (default: python:X.Y-slim of the app's Python).",
)
@click.option(
    "--runtime-image",
    default=None,
    help="The image with Conveyor installed that model and stream apps and Conveyor's task "
    "steps run on (default: built from the server's own Conveyor on --base-image, see "
    "`conveyor image runtime`).",
)
@click.option("--replace", is_flag=True, help="Replace a target of that name.")
def add_command(
    name: str,
    kubernetes: bool,
    context: str | None,
    namespace: str,
    registry: str,
    artifact_root: str | None,
    artifact_secret: str | None,
    routing: str,
    ingress_class: str | None,
    gateway: str | None,
    base_image: str | None,
    runtime_image: str | None,
    replace: bool,
) -> None:
    """Add a target, e.g. `conveyor target add prod --kubernetes --namespace ds --registry R`."""
    if not kubernetes:
        raise UsageError(
            "say what kind of target it is: --kubernetes (the only kind besides local)",
            hint="conveyor target add prod --kubernetes --namespace ds --registry HOST/REPO",
        )
    config = {
        "context": context,
        "namespace": namespace,
        "registry": registry,
        "artifact_root": artifact_root,
        "artifact_secret": artifact_secret,
        "routing": routing,
        "ingress_class": ingress_class,
        "gateway": gateway,
        "base_image": base_image,
        "runtime_image": runtime_image,
    }
    body = {"name": name, "kind": "kubernetes", "config": config, "replace": replace}
    result = connect().call("POST", "/v1/targets", body)
    where = f"context {context}" if context else "the current context"
    click.echo(
        f"target {name} {'added' if result['created'] else 'replaced'}: Kubernetes, {where}, "
        f"namespace {namespace}, images in {registry}"
    )


@target_group.command("list")
def list_command() -> None:
    """The targets: `local` first, then the added ones."""
    for target in connect().call("GET", "/v1/targets"):
        config = target["config"]
        if target["kind"] == "local":
            click.echo("local  this machine (supervisor and router)  default")
            continue
        context = config.get("context") or "(current context)"
        click.echo(
            f"{target['name']}  kubernetes  context {context}  namespace {config['namespace']}  "
            f"registry {config['registry']}  routing {config['routing']}"
        )


@target_group.command("remove")
@click.argument("name")
def remove_command(name: str) -> None:
    """Forget a target (what runs on the cluster is not touched)."""
    connect().call("DELETE", f"/v1/targets/{name}")
    click.echo(f"target {name} removed")
