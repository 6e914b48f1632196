"""Type stubs for twisted_patch._native, the C core's CPython binding."""


PLATFORM_CORE: str
OWNER_BACKEND: str
BOUND_VISIBLE: int

# family, host, port, uid, user, inode, v6only, pids, names, pids truncated
_OwnerRow = tuple[
    int, str, int, int | None, str | None, int | None, bool | None,
    tuple[int, ...], tuple[str | None, ...], bool,
]

class BindError(OSError):
    stage: str
    detail: str
    address: str | None

def parse_address(host: str | None, port: int, family: int = ...) -> tuple[int, str, int]: ...
def open_socket(family: int) -> int: ...
def bind(handle: int, host: str | None, port: int) -> None: ...
def listen(handle: int, backlog: int) -> None: ...
def listen_tcp(
    host: str | None, port: int, backlog: int, family: int = ..., strict: bool = ...
) -> int: ...
def close(handle: int) -> None: ...
def unlisten(handle: int) -> None: ...
def socket_options(handle: int) -> dict[str, int]: ...
def strerror(code: int) -> str: ...
def listeners(
    port: int,
    self_only: bool = ...,
    processes: bool = ...,
    all_processes: bool = ...,
) -> list[_OwnerRow]: ...
def bound(
    port: int,
    self_only: bool = ...,
    processes: bool = ...,
    all_processes: bool = ...,
) -> list[_OwnerRow]: ...
def process_start_time(pid: int) -> float: ...
def timewait(port: int) -> int: ...
def process_user(pid: int) -> tuple[int | None, str | None]: ...
def guard_open(host: str | None, port: int, family: int = ...) -> int: ...
def probe(handle: int) -> list[tuple[str, str, str, int, str, str, bool]]: ...
def connection(
    client_host: str,
    client_port: int,
    server_host: str,
    server_port: int,
    pid: int = ...,
    processes: bool = ...,
) -> tuple[
    str,
    int | None,
    tuple[
        int,
        str,
        int,
        int | None,
        str | None,
        int | None,
        bool | None,
        tuple[int, ...],
        tuple[str | None, ...],
        bool,
    ]
    | None,
]: ...
