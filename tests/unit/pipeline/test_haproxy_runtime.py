import shutil
import subprocess

import pytest

from prefect_delivery.blocks.routing.haproxy_runtime import BACKEND, parse_stat, render_config

STAT = (
    "# pxname,svname,scur,stot,status,weight,uweight,hrsp_2xx,hrsp_5xx,rtime,rtime_max,"
    "check_status,addr\n"
    "fe_app,FRONTEND,0,10,OPEN,,,,,,,,\n"
    f"{BACKEND},s0,1,50,UP,200,200,45,5,3,9,L7OK,127.0.0.1:4001\n"
    f"{BACKEND},s1,0,0,MAINT,0,0,0,0,0,0,,127.0.0.1:1\n"
    f"{BACKEND},BACKEND,1,50,UP,200,,,,,,,\n"
)


def test_parse_stat_keeps_backend_servers_only():
    servers = parse_stat(STAT)
    assert [s.name for s in servers] == ["s0", "s1"]
    s0, s1 = servers
    assert (s0.address, s0.weight, s0.responses_5xx, s0.total_sessions) == (
        "127.0.0.1:4001",
        200,
        5,
        50,
    )
    assert s0.in_use and not s1.in_use


def test_parse_stat_rejects_garbage():
    from prefect_delivery.blocks.errors import InfrastructureError

    with pytest.raises(InfrastructureError):
        parse_stat("Unknown command")


@pytest.mark.skipif(not shutil.which("haproxy"), reason="haproxy not installed")
def test_rendered_config_is_accepted_by_haproxy(tmp_path):
    cfg = tmp_path / "h.cfg"
    cfg.write_text(
        render_config(
            frontend_host="127.0.0.1",
            frontend_port=18999,
            admin_socket=str(tmp_path / "s"),
            pidfile=str(tmp_path / "p"),
            server_slots=4,
        )
    )
    check = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
