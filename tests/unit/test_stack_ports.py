"""A stack beside others gets ports of its own: none repeats within the stack."""

from __future__ import annotations

from pathlib import Path

from deploy.stack import StackConfig


def test_a_stack_on_free_ports_uses_every_port_once(tmp_path: Path) -> None:
    for _ in range(50):  # ports picked one at a time repeated now and then
        config = StackConfig.on_free_ports(
            tmp_path,
            "postgresql://x/y",
            "amqp://x",
            exchange="e",
            queue_prefix="p",
            approval_workers=4,
        )
        first_approval = config.metrics_ports["approval"]
        ports = [
            config.gateway_port,
            config.order_port,
            config.checkout_port,
            config.ops_port,
            config.sandbox_port,
            *(port for role, port in config.metrics_ports.items() if role != "approval"),
            *range(first_approval, first_approval + 4),
        ]
        assert len(set(ports)) == len(ports)
