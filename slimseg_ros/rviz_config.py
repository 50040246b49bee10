"""rviz2 config for slimseg_node, rendered from the template config/slimseg.rviz for one launch's topics.

rviz2 has no substitution of its own in .rviz files, so a fixed config shows empty panels as soon as the
input is remapped (`image_topic:=/camera/image_raw`) or the node runs in a namespace. The launch file renders
the template with the topics that launch resolves, to a temporary file, and starts rviz2 on it. Pure Python
(no launch, no rviz): unit-tested without a ROS install, and usable by hand:

    python -m slimseg_ros.rviz_config --image-topic /camera/image_raw --namespace /robot -o my.rviz
"""

from __future__ import annotations

import argparse
import re
import string
import sys
import tempfile
from pathlib import Path

from slimseg_ros.params import NODE_NAME

PLACEHOLDERS = ("image_topic", "overlay_topic", "color_topic")
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _check_name(name: str, what: str) -> None:
    """ROS 2 name rules that matter here: tokens of letters, digits and _ (not starting with a digit)
    separated by single slashes, optionally after '/' or '~/'; this also keeps YAML syntax out of the file."""
    body = name[1:] if name.startswith("/") else name[2:] if name.startswith("~/") else name
    if not body or not all(_TOKEN.fullmatch(token) for token in body.split("/")):
        raise ValueError(f"{what} {name!r} is not a valid ROS name (tokens of letters, digits, _ and '/')")


def normalize_namespace(namespace: str) -> str:
    """'' or '/' -> '' (root); 'robot', '/robot/' -> '/robot'; ValueError for an invalid one."""
    text = namespace.strip()
    if text.startswith("~"):
        raise ValueError(f"namespace {namespace!r} cannot be private (~)")
    body = text.strip("/")
    if not body:
        return ""
    _check_name("/" + body, "namespace")
    return "/" + body


def resolve_topic(name: str, namespace: str = "", node_name: str = NODE_NAME) -> str:
    """The absolute topic a node in `namespace` uses for `name`, as rcl resolves a remapping target:
    absolute names stay, `~/x` is under the node's name, relative names are under the namespace."""
    _check_name(name, "topic")
    ns = normalize_namespace(namespace)
    if name.startswith("/"):
        return name
    if name.startswith("~/"):
        return f"{ns}/{node_name}/{name[2:]}"
    return f"{ns}/{name}"


def rviz_topics(image_topic: str, namespace: str = "", node_name: str = NODE_NAME) -> dict[str, str]:
    """The three topics the rviz view shows: the node's input after remapping, its overlay and colour mask."""
    return {
        "image_topic": resolve_topic(image_topic, namespace, node_name),
        "overlay_topic": resolve_topic("~/overlay", namespace, node_name),
        "color_topic": resolve_topic("~/color", namespace, node_name),
    }


def render_rviz_config(
    template: str, image_topic: str, namespace: str = "", node_name: str = NODE_NAME
) -> str:
    """The template's ${image_topic}, ${overlay_topic}, ${color_topic} replaced by absolute topic names.

    Raises ValueError for an invalid name, or when the template lacks a placeholder or has an unknown one,
    so a template edited out of step with this function fails at launch, not as an empty panel.
    """
    topics = rviz_topics(image_topic, namespace, node_name)
    matches = string.Template.pattern.finditer(template)
    found = {m.group("named") or m.group("braced") for m in matches} - {None}
    if found != set(PLACEHOLDERS):
        raise ValueError(f"rviz template placeholders {sorted(found)} != expected {sorted(PLACEHOLDERS)}")
    return string.Template(template).substitute(topics)


def write_rviz_config(
    template_path: str | Path,
    image_topic: str,
    namespace: str = "",
    node_name: str = NODE_NAME,
    out_dir: str | Path | None = None,
) -> Path:
    """Render the template to a new file (in out_dir, else the system temp folder) and return its path."""
    text = render_rviz_config(Path(template_path).read_text(), image_topic, namespace, node_name)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept on disk for rviz2 to read
        "w", prefix="slimseg_", suffix=".rviz", dir=out_dir, delete=False
    )
    with handle:
        handle.write(text)
    return Path(handle.name)


def default_template() -> Path:
    """config/slimseg.rviz next to the default params file (source tree or installed share folder)."""
    from slimseg_ros.params import default_params_file

    return default_params_file().with_name("slimseg.rviz")


def main(argv: list[str] | None = None) -> int:
    """Render the rviz config for given topics to a file or stdout."""
    parser = argparse.ArgumentParser(
        prog="python -m slimseg_ros.rviz_config", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--image-topic", default="image", help="the node's input topic (default: image)")
    parser.add_argument("--namespace", default="", help="the node's namespace (default: none)")
    parser.add_argument("--template", help="template (default: the package's config/slimseg.rviz)")
    parser.add_argument("-o", "--output", default=None, help="output file (default: stdout)")
    args = parser.parse_args(argv)
    template = Path(args.template) if args.template else default_template()
    try:
        text = render_rviz_config(template.read_text(), args.image_topic, args.namespace)
    except (OSError, ValueError) as exc:
        print(f"rviz_config: error: {exc}", file=sys.stderr)
        return 2
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
