// A minimal Node caller of mtr-sso: one promise-returning method per RPC,
// a deadline on every call, and errors decoded from google.rpc.Status details
// into { code, reason, metadata, fieldViolations, retryAfterSeconds }.
'use strict';

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const PROTO_ROOT = process.env.MTR_SSO_PROTO_ROOT || path.join(__dirname, '..', '..', 'proto');
const DEFAULT_TIMEOUT_MS = 5000;

const definition = protoLoader.loadSync('matchtrader/sso/v1/sso_service.proto', {
  includeDirs: [PROTO_ROOT],
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const { SsoService } = grpc.loadPackageDefinition(definition).matchtrader.sso.v1;

const errorTypes = protobuf.loadSync([
  path.join(__dirname, 'protos/google/rpc/status.proto'),
  path.join(__dirname, 'protos/google/rpc/error_details.proto'),
]);
const Status = errorTypes.lookupType('google.rpc.Status');
const detailTypes = {
  'type.googleapis.com/google.rpc.ErrorInfo': errorTypes.lookupType('google.rpc.ErrorInfo'),
  'type.googleapis.com/google.rpc.BadRequest': errorTypes.lookupType('google.rpc.BadRequest'),
  'type.googleapis.com/google.rpc.RetryInfo': errorTypes.lookupType('google.rpc.RetryInfo'),
};

/** A failed RPC with its stable reason. */
class SsoError extends Error {
  constructor(grpcError) {
    super(grpcError.details);
    this.code = grpcError.code;
    this.reason = '';
    this.metadata = {};
    this.fieldViolations = [];
    this.retryAfterSeconds = null;
    const raw = grpcError.metadata && grpcError.metadata.get('grpc-status-details-bin')[0];
    if (!raw) return;
    for (const detail of Status.decode(raw).details) {
      const type = detailTypes[detail.type_url];
      if (!type) continue;
      const message = type.toObject(type.decode(detail.value), { longs: Number, defaults: true });
      if (detail.type_url.endsWith('ErrorInfo')) {
        this.reason = message.reason;
        this.metadata = message.metadata;
      } else if (detail.type_url.endsWith('BadRequest')) {
        this.fieldViolations = message.fieldViolations.map((v) => v.field);
      } else if (detail.type_url.endsWith('RetryInfo')) {
        this.retryAfterSeconds = Number(message.retryDelay.seconds || 0);
      }
    }
  }
}

class SsoClient {
  constructor(target, { timeoutMs = DEFAULT_TIMEOUT_MS, tenant = '' } = {}) {
    this.stub = new SsoService(target, grpc.credentials.createInsecure());
    this.timeoutMs = timeoutMs;
    this.tenant = tenant;
  }

  close() {
    this.stub.close();
  }

  call(method, request) {
    const deadline = new Date(Date.now() + this.timeoutMs);
    return new Promise((resolve, reject) => {
      this.stub[method]({ tenant: this.tenant, ...request }, { deadline }, (error, response) =>
        error ? reject(new SsoError(error)) : resolve(response));
    });
  }

  login(email, password, brokerId = '') {
    return this.call('Login', { email, password, brokerId });
  }

  refresh(refreshToken) {
    return this.call('Refresh', { refreshToken });
  }

  issueOneTimeToken(email, { validitySeconds, startSession = false } = {}) {
    const request = { email, startSession };
    if (validitySeconds) request.validity = { seconds: validitySeconds, nanos: 0 };
    return this.call('IssueOneTimeToken', request);
  }

  createAccount(email, password, firstname, lastname, { startSession = false } = {}) {
    return this.call('CreateAccount', { email, password, personalDetails: { firstname, lastname }, startSession });
  }
}

/** The Set-Cookie header values to send to the browser for a session. */
function setCookieHeaders(session) {
  return session.cookies.map((cookie) => cookie.setCookieHeader);
}

module.exports = { SsoClient, SsoError, setCookieHeaders, grpcStatus: grpc.status };
