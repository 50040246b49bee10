"""One harness for `slimseg_node` as a process: the demo, the node bench and the tests all start it here.

`NodeProcess` owns what every caller needs and used to copy: a private ROS domain and namespace (so runs on
one machine never hear each other), the node started the way launch starts it (console entry,
`--ros-args --params-file`), its log, and a stop that is SIGINT first (the node's clean path, exit 0), then
kill after a timeout, keeping the exit code. `NodeClient` is the caller's side: an rclpy context on that
domain and transport with a node spinning in a thread, lifecycle-aware waiting until the node is up, and
parameters set through the node's real parameter service (as `ros2 param set` does).

    with NodeProcess({"manifest": path}, workdir=tmp) as proc, NodeClient(proc) as client:
        client.wait_up()                          # "active" (autostart), or the reason it is not
        client.set_parameters({"width": 0.5})     # {} when accepted, else {name: reason}
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from slimseg_ros.errors import SlimsegError

NODE_NAME = "slimseg_node"
# Linux: DDS ports of domain ids above 101 can fall into the ephemeral port range (ROS 2 docs, "domain ID").
DOMAIN_RANGE = (1, 101)
TRANSPORT_ENV = "FASTDDS_BUILTIN_TRANSPORTS"  # read by Fast DDS when a participant is created
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 20


def node_command() -> list[str]:
    """The installed console entry (as launch runs it), or the same entry as a module in a bare checkout."""
    entry = Path(sys.executable).with_name(NODE_NAME)
    return [str(entry)] if entry.is_file() else [sys.executable, "-m", "slimseg_ros.node_entry"]


def private_domain() -> int:
    """A random ROS domain id, so parallel runs on one machine do not cross-talk."""
    return random.randint(*DOMAIN_RANGE)


class NodeProcess:
    """A node process in a private domain and namespace, with its log; a context manager that always stops it.

    `params` go into a params file for `/**/<name>` (any namespace), so values keep their YAML types.
    `command` replaces the node's entry (e.g. the bench's echo process); `ros_args` are appended after
    `--ros-args` (remaps such as `-r image:=/camera/image_raw`); `env` is merged over os.environ (a None
    value unsets a variable, e.g. FASTDDS_BUILTIN_TRANSPORTS for Fast DDS's default transports).
    """

    def __init__(self, params: Mapping[str, Any] | None, workdir: str | Path, *, prefix: str = "slimseg",
                 namespace: str | None = None, domain_id: int | None = None,
                 env: Mapping[str, str | None] | None = None, command: list[str] | None = None,
                 ros_args: list[str] | None = None, log: str | Path | None = None,
                 params_file: str | Path | None = None, name: str = NODE_NAME) -> None:
        self.workdir = Path(workdir)
        self.namespace = namespace or f"/{prefix}_{uuid.uuid4().hex[:8]}"
        self.domain_id = private_domain() if domain_id is None else int(domain_id)
        self.name = name
        self.params = dict(params or {})
        merged = {**os.environ, **(env or {}), "ROS_DOMAIN_ID": str(self.domain_id)}
        self.env = {k: v for k, v in merged.items() if v is not None}  # None in `env`: unset that variable
        self.command = list(command) if command is not None else None
        self.ros_args = list(ros_args or [])
        stem = self.namespace.strip("/").replace("/", "_")
        self.log_path = Path(log) if log else self.workdir / f"{stem}.log"
        self.params_file = Path(params_file) if params_file else self.workdir / f"{stem}_params.yaml"
        self.returncode: int | None = None
        self._proc: subprocess.Popen | None = None

    @property
    def full_name(self) -> str:
        """The node's fully qualified name: the prefix of its topics and services."""
        return f"{self.namespace.rstrip('/')}/{self.name}"

    @property
    def pid(self) -> int:
        """The process id (for CPU pinning or signals)."""
        if self._proc is None:
            raise RuntimeError("NodeProcess not started")
        return self._proc.pid

    def argv(self) -> list[str]:
        """The command line, as launch would build it."""
        if self.command is not None:
            return list(self.command)
        cmd = node_command() + ["--ros-args"]
        if self.params:
            self.params_file.write_text(
                yaml.safe_dump({f"/**/{self.name}": {"ros__parameters": self.params}}))
            cmd += ["--params-file", str(self.params_file)]
        return cmd + ["-r", f"__ns:={self.namespace}", *self.ros_args]

    def start(self) -> NodeProcess:
        """Start the process, its stdout and stderr going to the log."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "w") as log:  # the child keeps its own handle
            self._proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, env=self.env)
        return self

    def poll(self) -> int | None:
        """The exit code once it has exited, else None."""
        if self._proc is not None and self.returncode is None:
            self.returncode = self._proc.poll()
        return self.returncode

    @property
    def alive(self) -> bool:
        """Started and not yet exited."""
        return self._proc is not None and self.poll() is None

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit on its own (e.g. after the shutdown transition); its exit code."""
        if self._proc is None:
            raise RuntimeError("NodeProcess not started")
        self.returncode = self._proc.wait(timeout)
        return self.returncode

    def signal(self, sig: int = signal.SIGINT) -> None:
        """Send a signal while it runs (SIGINT: the node's clean shutdown)."""
        if self.alive:
            self._proc.send_signal(sig)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGINT, then kill after `timeout` s; returns the exit code (None if never started)."""
        if self._proc is None:
            return None
        if self.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        return self.poll()

    def log_text(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of the log, for an error message."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __enter__(self) -> NodeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class NodeClient:
    """The caller's side of a NodeProcess: an rclpy context on its domain and transport, spun in a thread.

    `node` is a plain rclpy node for the caller's publishers and subscriptions; `make_node(context)` builds
    the caller's own node class instead (the demo's driver). Service calls block the calling thread only.
    """

    def __init__(self, process: NodeProcess, make_node: Callable[[Any], Any] | None = None,
                 name: str = "slimseg_client") -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.process = process
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=process.domain_id)
        transport = process.env.get(TRANSPORT_ENV)
        saved = os.environ.get(TRANSPORT_ENV)
        _set_env(TRANSPORT_ENV, transport)  # the participant is created with the node: same transport
        try:
            if make_node is not None:
                self.node = make_node(self.context)
            else:
                self.node = rclpy.create_node(f"{name}_{uuid.uuid4().hex[:6]}", context=self.context)
        finally:
            _set_env(TRANSPORT_ENV, saved)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self._spinner.start()
        self._clients: dict[tuple[Any, str], Any] = {}

    # -- services ------------------------------------------------------------------------------------------
    def service(self, srv_type: Any, name: str) -> Any:
        """A client for `<node>/<name>` (or an absolute name), created once."""
        full = name if name.startswith("/") else f"{self.process.full_name}/{name}"
        key = (srv_type, full)
        if key not in self._clients:
            self._clients[key] = self.node.create_client(srv_type, full)
        return self._clients[key]

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 10.0) -> Any:
        """Call a service of the node and wait for the reply; TimeoutError names the service."""
        client = self.service(srv_type, name)
        if not self._wait_for_service(client, timeout):
            raise TimeoutError(f"service {client.srv_name} did not appear within {timeout:.0f} s"
                               f"{self._exit_note()}")
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout):
            client.remove_pending_request(future)
            raise TimeoutError(f"no reply from {client.srv_name} within {timeout:.0f} s{self._exit_note()}")
        return future.result()

    def _wait_for_service(self, client: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if client.service_is_ready():
                return True
            if self.process.poll() is not None:
                return False
            time.sleep(0.02)
        return False

    def _exit_note(self) -> str:
        code = self.process.poll()
        if code is None:
            return ""
        return f"; {self.process.name} exited with code {code}, log {self.process.log_path}:\n" \
               f"{self.process.log_tail()}"

    def set_parameters(self, values: Mapping[str, Any], timeout: float = 10.0) -> dict[str, str]:
        """Set parameters through the node's parameter service, as one request; {name: reason} of rejections.

        Python types pick the ROS type (bool, int, float, str, lists of them): pass 1.0, not 1, for a double.
        """
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        request = SetParameters.Request(
            parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
        reply = self.call(SetParameters, "set_parameters", request, timeout)
        return {k: r.reason for k, r in zip(values, reply.results, strict=True) if not r.successful}

    # -- lifecycle -----------------------------------------------------------------------------------------
    def state(self, timeout: float = 10.0) -> str:
        """The node's lifecycle state label (unconfigured, inactive, active, finalized)."""
        from lifecycle_msgs.srv import GetState

        return self.call(GetState, "get_state", GetState.Request(), timeout).current_state.label

    def change_state(self, transition: int | str, timeout: float = 10.0) -> bool:
        """Request a lifecycle transition by id or label; True when the node reports success."""
        from lifecycle_msgs.srv import ChangeState

        request = ChangeState.Request()
        if isinstance(transition, str):
            request.transition.label = transition
        else:
            request.transition.id = transition
        return bool(self.call(ChangeState, "change_state", request, timeout).success)

    def wait_up(self, expect: str | None = "active", timeout: float = 90.0) -> str:
        """Wait until the node answers its lifecycle services; returns its state.

        The node runs autostart (configure, activate) before it spins, so the first answer comes after it.
        With `expect` (active for autostart:=true, unconfigured for false) any other state is an error that
        carries the log tail; so is the process exiting first.
        """
        deadline = time.monotonic() + timeout
        try:
            state = self.state(timeout=timeout)
        except TimeoutError as exc:
            waited = timeout - max(0.0, deadline - time.monotonic())
            raise SlimsegError(f"{self.process.full_name} did not come up in {waited:.0f} s: {exc}",
                               f"see {self.process.log_path}") from exc
        if expect is not None and state != expect:
            raise SlimsegError(f"{self.process.full_name} is {state}, expected {expect}; log "
                               f"{self.process.log_path}:\n{self.process.log_tail()}")
        return state

    def close(self) -> None:
        """Stop spinning and leave the domain (the process is the NodeProcess's to stop)."""
        import rclpy

        self.executor.shutdown()
        # the spinner must have left the executor before the node and context go: a thread still inside
        # rclpy's C++ wait at interpreter exit aborts the process ("terminate called without an active
        # exception", rc -6)
        self._spinner.join(timeout=5.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _set_env(key: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value
