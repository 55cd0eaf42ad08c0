// A Node test's life against a running emulator, through emulator.admin.v1.Admin only: add a
// stub and a fault for its session, call the emulated service, verify (a wrong expectation and
// a right one), list its calls, reset its session. Plain JS, @grpc/grpc-js and
// @grpc/proto-loader, no build step; tests/test_admin_node.py runs it and checks the JSON it
// prints (one object on stdout), as it checks grpcurl's and curl's (tests/admin_flow.py:
// the stub and fault here are the ones there).
//
//   node tests/node/admin_flow.js 127.0.0.1:50051 my-session
"use strict";

const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [target, session] = process.argv.slice(2);
if (!target || !session) {
  console.error("usage: node admin_flow.js HOST:PORT SESSION");
  process.exit(2);
}
const ROOT = path.resolve(__dirname, "..", "..");
const GET_PRODUCT = "acme.shop.v1.Catalog/GetProduct";
const SESSION_HEADER = "x-emulator-session";
const TIMEOUT_MS = 10000;

// google/protobuf/struct.proto and timestamp.proto, which admin.proto imports, come with
// protobufjs (proto-loader's parser): only the repository's folders are include dirs.
const definition = protoLoader.loadSync(["acme/shop/v1/catalog.proto", "admin.proto"], {
  includeDirs: [path.join(ROOT, "protos"), path.join(ROOT, "emulator", "admin")],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: false,
  arrays: true, // empty repeated fields as [], not missing
  oneofs: true,
});
const loaded = grpc.loadPackageDefinition(definition);
const credentials = grpc.credentials.createInsecure();
const admin = new loaded.emulator.admin.v1.Admin(target, credentials);
const catalog = new loaded.acme.shop.v1.Catalog(target, credentials);
const STATUS_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([k, v]) => [v, k]));

// google.protobuf.Struct as proto-loader gives it ({fields: {k: {stringValue: ...}}}) and back.
function toValue(value) {
  if (value === null || value === undefined) return { nullValue: "NULL_VALUE" };
  if (Array.isArray(value)) return { listValue: { values: value.map(toValue) } };
  switch (typeof value) {
    case "string":
      return { stringValue: value };
    case "number":
      return { numberValue: value };
    case "boolean":
      return { boolValue: value };
    default:
      return { structValue: toStruct(value) };
  }
}

function toStruct(object) {
  return { fields: Object.fromEntries(Object.entries(object).map(([k, v]) => [k, toValue(v)])) };
}

function fromValue(value) {
  switch (value.kind) {
    case "nullValue":
      return null;
    case "listValue":
      return (value.listValue.values || []).map(fromValue);
    case "structValue":
      return fromStruct(value.structValue);
    default:
      return value[value.kind];
  }
}

function fromStruct(struct) {
  const fields = (struct && struct.fields) || {};
  return Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, fromValue(v)]));
}

function unary(client, method, request, metadata = new grpc.Metadata()) {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + TIMEOUT_MS;
    client[method](request, metadata, { deadline }, (error, reply) =>
      error ? reject(error) : resolve(reply),
    );
  });
}

// The admin calls name their session in the request (the header would do too).
const adminCall = (method, request) => unary(admin, method, { session, ...request });

// A call to the emulated service, with or without the session header: what came back.
async function getProduct(productId, withSession) {
  const metadata = new grpc.Metadata();
  if (withSession) metadata.set(SESSION_HEADER, session);
  try {
    const product = await unary(catalog, "GetProduct", { product_id: productId }, metadata);
    return { code: "OK", product_id: product.product_id, name: product.name };
  } catch (error) {
    if (error.code === undefined) throw error;
    return { code: STATUS_NAMES[error.code], details: error.details };
  }
}

async function calls() {
  const list = await adminCall("ListCalls", { method: GET_PRODUCT });
  return {
    total: Number(list.total),
    calls: list.calls.map((record) => ({
      index: Number(record.index),
      method: record.method,
      code: record.code,
      request: fromStruct(record.requests[0]),
      session: record.session,
      answered_by: record.answered_by || "",
      faults: record.faults,
    })),
  };
}

async function main() {
  const out = {};
  const added = await adminCall("AddStubs", {
    stubs: [
      toStruct({
        name: "p1-session-stub",
        method: GET_PRODUCT,
        match: { request: { product_id: "p1" } },
        respond: { message: { name: "Stubbed for the session" } },
      }),
    ],
  });
  out.stubs = added.stubs.map(({ name, methods, session: s }) => ({ name, methods, session: s }));
  const fault = await adminCall("AddFault", {
    rule: toStruct({
      name: "p2-session-fault",
      match: { method: GET_PRODUCT, request: { product_id: "p2" } },
      abort: { code: "UNAVAILABLE", message: "p2 is down for the session" },
    }),
  });
  out.fault = { name: fault.name, session: fault.session, active: fault.active };

  out.session_calls = { p1: await getProduct("p1", true), p2: await getProduct("p2", true) };
  out.other_calls = { p1: await getProduct("p1", false), p2: await getProduct("p2", false) };

  const verify = async (request, times) => {
    const answer = await adminCall("Verify", { method: GET_PRODUCT, request: toStruct(request), times });
    return { ok: Boolean(answer.ok), count: Number(answer.count || 0), report: answer.report || "" };
  };
  out.verify_wrong = await verify({ product_id: "p3" }, 1);
  out.verify_right = await verify({ product_id: "p1" }, 1);
  out.listed = await calls();

  const reset = await adminCall("Reset", {});
  out.reset = reset.parts;
  out.after_reset = { p1: await getProduct("p1", true), p2: await getProduct("p2", true) };
  out.listed_after_reset = await calls();
  out.stubs_after_reset = (await adminCall("ListStubs", {})).stubs.map((stub) => stub.name);
  out.faults_after_reset = (await adminCall("ListFaults", {})).faults.map((f) => f.name);
  process.stdout.write(JSON.stringify(out) + "\n");
}

main()
  .catch((error) => {
    console.error(`admin_flow.js: ${error.stack || error}`);
    process.exitCode = 1;
  })
  .finally(() => {
    admin.close();
    catalog.close();
  });
