"""A minimal Python caller of mtr-sso.

The stubs are generated from the repository's proto/ into `gen/` beside this
file the first time it is imported (grpcio-tools bundles protoc and the
well-known types), so `pip install -r requirements.txt` is all it needs.
Every call sets a deadline; errors are decoded from the `google.rpc.Status`
details.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

HERE = Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent.parent / "proto"
GENERATED = HERE / "gen"


def generate_stubs(out: Path = GENERATED) -> None:
    """Runs protoc (from grpcio-tools) over the service's proto into `out`."""
    import grpc_tools
    from grpc_tools import protoc

    out.mkdir(parents=True, exist_ok=True)
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    service = PROTO_ROOT / "matchtrader" / "sso" / "v1" / "sso_service.proto"
    arguments = ["protoc", f"-I{PROTO_ROOT}", f"-I{well_known}", f"--python_out={out}", f"--grpc_python_out={out}",
                 str(service)]
    if protoc.main(arguments) != 0:
        raise RuntimeError(f"protoc could not compile {service}")


try:
    from matchtrader.sso.v1 import sso_service_pb2 as pb
    from matchtrader.sso.v1 import sso_service_pb2_grpc as pb_grpc
except ImportError:
    # Not generated yet (or not on the path): generate once, then import.
    if not (GENERATED / "matchtrader").exists():
        generate_stubs()
    sys.path.insert(0, str(GENERATED))
    from matchtrader.sso.v1 import sso_service_pb2 as pb
    from matchtrader.sso.v1 import sso_service_pb2_grpc as pb_grpc

DEFAULT_TIMEOUT_S = 5.0


@dataclass
class SsoError(Exception):
    """A failed RPC with its stable reason and field violations."""

    code: grpc.StatusCode
    reason: str
    message: str
    metadata: dict[str, str] = field(default_factory=dict)
    field_violations: list[str] = field(default_factory=list)
    retry_after_s: float | None = None

    def __str__(self) -> str:
        return f"{self.code.name} {self.reason}: {self.message}"


def decode_error(error: grpc.RpcError) -> SsoError:
    """Turns a gRPC error into an SsoError, reading ErrorInfo, BadRequest and RetryInfo."""
    decoded = SsoError(code=error.code(), reason="", message=error.details() or "")
    status = rpc_status.from_call(error)
    if status is None:
        return decoded
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            decoded.reason = info.reason
            decoded.metadata = dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            decoded.field_violations = [v.field for v in bad.field_violations]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            decoded.retry_after_s = retry.retry_delay.ToTimedelta().total_seconds()
    return decoded


class SsoClient:
    """Thin wrapper: one method per RPC, deadlines always set, errors decoded."""

    def __init__(self, target: str, timeout_s: float = DEFAULT_TIMEOUT_S, tenant: str = "") -> None:
        self._channel = grpc.insecure_channel(target)
        self._stub = pb_grpc.SsoServiceStub(self._channel)
        self._timeout_s = timeout_s
        self._tenant = tenant

    def close(self) -> None:
        self._channel.close()

    def _call(self, method, request, timeout_s: float | None):
        try:
            return method(request, timeout=timeout_s or self._timeout_s)
        except grpc.RpcError as error:
            raise decode_error(error) from None

    def login(self, email: str, password: str, broker_id: str = "", timeout_s: float | None = None) -> pb.LoginResponse:
        request = pb.LoginRequest(tenant=self._tenant, email=email, password=password, broker_id=broker_id)
        return self._call(self._stub.Login, request, timeout_s)

    def refresh(self, refresh_token: str, timeout_s: float | None = None) -> pb.RefreshResponse:
        request = pb.RefreshRequest(tenant=self._tenant, refresh_token=refresh_token)
        return self._call(self._stub.Refresh, request, timeout_s)

    def issue_one_time_token(
        self, email: str, validity_s: int | None = None, start_session: bool = False, timeout_s: float | None = None
    ) -> pb.IssueOneTimeTokenResponse:
        request = pb.IssueOneTimeTokenRequest(tenant=self._tenant, email=email, start_session=start_session)
        if validity_s is not None:
            request.validity.seconds = validity_s
        return self._call(self._stub.IssueOneTimeToken, request, timeout_s)

    def create_account(
        self,
        email: str,
        password: str,
        firstname: str,
        lastname: str,
        start_session: bool = False,
        timeout_s: float | None = None,
    ) -> pb.CreateAccountResponse:
        request = pb.CreateAccountRequest(
            tenant=self._tenant,
            email=email,
            password=password,
            personal_details=pb.PersonalDetails(firstname=firstname, lastname=lastname),
            start_session=start_session,
        )
        return self._call(self._stub.CreateAccount, request, timeout_s)


def set_cookie_headers(session: pb.Session) -> list[str]:
    """The Set-Cookie header values to send to the browser for a session."""
    return [cookie.set_cookie_header for cookie in session.cookies]
