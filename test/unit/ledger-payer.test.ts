import { Keypair } from "@stellar/stellar-sdk";
import { describe, expect, it } from "vitest";
import { reconcileSigner } from "../../src/cli/ledger-commands.js";
import type { WalletOptions } from "../../src/config/config.js";
import { GENESIS_HASH, rowHash, toExportObject, verifyChain } from "../../src/ledger/entry.js";
import type { LedgerFields, LedgerRow } from "../../src/ledger/entry.js";
import type { PaymentSummary } from "../../src/ledger/ledger.js";
import { compareDays, paidBy } from "../../src/payment/reconcile.js";
import { StokaProxyError } from "../../src/errors.js";

/**
 * The payer in the ledger (docs/operations.md, The ledger): the hash of a row without one is
 * the hash earlier versions wrote (pinned), a row with one covers it, and reconcile compares
 * only the reconciled wallet's payments, counting rows of unknown payer with a note.
 */
const FIELDS: LedgerFields = {
  paymentId: "p-1",
  requestId: "r-1",
  atMs: 1764547200000,
  client: "app",
  route: "store",
  method: "POST",
  url: "http://test.api.stoka.space/v1/store",
  amount: 1400n,
  payTo: "GPAYEE",
  asset: "CUSDC",
  network: "stellar:testnet",
  state: "settled",
  tx: "ab".repeat(32),
  upstreamStatus: 201,
  reason: null,
};
/** What stoka-proxy wrote for FIELDS as row 1 before the ledger had a payer. */
const OLD_HASH = "3665c2545b9443dff3f89f94e25a469189c925a124fb96ac4a161e49ab896d3f";

const ALICE = Keypair.random().publicKey();
const BOB = Keypair.random().publicKey();

function chain(fields: LedgerFields[]): LedgerRow[] {
  let prev = GENESIS_HASH;
  return fields.map((f, i) => {
    const hash = rowHash(prev, i + 1, f);
    const row = { ...f, seq: i + 1, prevHash: prev, hash };
    prev = hash;
    return row;
  });
}

describe("the row hash, with and without a payer", () => {
  it.each([
    ["no payer field (rows of earlier versions)", {}, OLD_HASH],
    ["payer null (unknown)", { payer: null }, OLD_HASH],
    ["payer undefined", { payer: undefined }, OLD_HASH],
  ])("%s: hashes as earlier versions did", (_what, over, expected) => {
    expect(rowHash(GENESIS_HASH, 1, { ...FIELDS, ...over })).toBe(expected);
  });

  it("a payer is covered: with one the hash differs, and each payer gives its own", () => {
    const a = rowHash(GENESIS_HASH, 1, { ...FIELDS, payer: ALICE });
    const b = rowHash(GENESIS_HASH, 1, { ...FIELDS, payer: BOB });
    expect(a).not.toBe(OLD_HASH);
    expect(b).not.toBe(a);
  });

  it("a chain of old and new rows verifies; changing, removing or adding a payer is an edit", () => {
    const rows = chain([
      { ...FIELDS, paymentId: "old" },
      { ...FIELDS, paymentId: "new", payer: ALICE },
      { ...FIELDS, paymentId: "new", payer: ALICE, state: "settled" },
    ]);
    expect(verifyChain(rows, { seq: 3, hash: rows[2]?.hash ?? "" })).toMatchObject({ ok: true, rows: 3 });
    const edited = (i: number, payer: string | null) => rows.map((r, j) => (j === i ? { ...r, payer } : r));
    expect(verifyChain(edited(1, BOB), null)).toMatchObject({
      ok: false,
      seq: 2,
      reason: "row 2 was edited",
    });
    expect(verifyChain(edited(1, null), null)).toMatchObject({ ok: false, seq: 2 });
    expect(verifyChain(edited(0, ALICE), null)).toMatchObject({ ok: false, seq: 1 });
  });

  it("the export carries the payer (null when unknown)", () => {
    const [old, mine] = chain([FIELDS, { ...FIELDS, payer: ALICE }]);
    expect(toExportObject(old as LedgerRow).payer).toBeNull();
    expect(toExportObject(mine as LedgerRow).payer).toBe(ALICE);
  });
});

describe("reconcile compares one wallet's payments", () => {
  it.each([
    [ALICE, ALICE, "mine"],
    [BOB, ALICE, "other"],
    [null, ALICE, "unknown"],
    [undefined, ALICE, "unknown"],
    [BOB, undefined, "mine"],
  ] as const)("payer %s, wallet %s: %s", (payer, wallet, expected) => {
    expect(paidBy(payer, wallet)).toBe(expected);
  });

  const DAY = "2025-12-01";
  const summary = (id: string, state: string, amount: bigint, payer: string | null): PaymentSummary => ({
    ...FIELDS,
    paymentId: id,
    state: state as LedgerFields["state"],
    amount,
    payer,
    seq: 1,
    prevHash: GENESIS_HASH,
    hash: GENESIS_HASH,
    startedAtMs: Date.parse(`${DAY}T10:00:00Z`),
    firstSeq: 1,
  });

  it.each([
    {
      what: "another wallet's settled payment is left out: its usage is not this wallet's",
      ledger: [summary("a", "settled", 1400n, ALICE), summary("b", "settled", 900n, BOB)],
      upstream: 1400n,
      expected: { status: "match", ledgerSettled: 1400n, otherWallets: 1, unattributed: 0 },
    },
    {
      what: "another wallet's indeterminate payment is not resolved from this wallet's numbers",
      ledger: [summary("a", "settled", 1400n, ALICE), summary("b", "indeterminate", 900n, BOB)],
      upstream: 1400n,
      expected: { status: "match", indeterminate: [], otherWallets: 1 },
    },
    {
      what: "a row of unknown payer counts as this wallet's, and is reported",
      ledger: [summary("a", "settled", 1400n, ALICE), summary("c", "indeterminate", 700n, null)],
      upstream: 2100n,
      expected: {
        status: "all_indeterminate_charged",
        indeterminate: ["c"],
        unattributed: 1,
        otherWallets: 0,
      },
    },
    {
      what: "only unknown rows (a ledger of an earlier version): as before",
      ledger: [summary("a", "settled", 1400n, null)],
      upstream: 1400n,
      expected: { status: "match", unattributed: 1 },
    },
  ])("$what", ({ ledger, upstream, expected }) => {
    const [day] = compareDays(ledger, [{ date: DAY, spentAtomic: upstream }], ALICE);
    expect(day).toMatchObject(expected);
  });

  it("without a wallet every payment counts (no filter)", () => {
    const [day] = compareDays(
      [summary("a", "settled", 1400n, ALICE), summary("b", "settled", 900n, BOB)],
      [{ date: DAY, spentAtomic: 2300n }],
    );
    expect(day).toMatchObject({ status: "match", otherWallets: 0 });
  });
});

describe("reconcile --wallet", () => {
  const key = Keypair.random();
  const base = { signCommandTimeoutMs: 1000 } as unknown as WalletOptions;
  const withKey = { ...base, secret: key.secret() } as WalletOptions;
  const withCommand = { ...base, signCommand: "false", address: ALICE } as WalletOptions;

  it("defaults to the configured wallet", () => {
    expect(reconcileSigner(withKey, undefined)?.address).toBe(key.publicKey());
    expect(reconcileSigner(withCommand, undefined)?.address).toBe(ALICE);
  });

  it("the local key's own address is accepted; another is refused, saying what to do", () => {
    expect(reconcileSigner(withKey, key.publicKey())?.address).toBe(key.publicKey());
    let error: unknown;
    try {
      reconcileSigner(withKey, BOB);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(StokaProxyError);
    expect((error as StokaProxyError).message).toContain(`--wallet ${BOB} is not the configured wallet`);
    expect((error as StokaProxyError).hint).toMatch(/that wallet's key/);
  });

  it("with a sign command, --wallet names the address it signs for", () => {
    expect(reconcileSigner(withCommand, BOB)?.address).toBe(BOB);
  });

  it.each(["GABC", "not-an-address", `S${"A".repeat(55)}`])("%s is not a G-address: refused", (bad) => {
    expect(() => reconcileSigner(withKey, bad)).toThrow(/--wallet must be a Stellar account address/);
  });
});

describe("the status page's payment list shows the paying wallet", () => {
  it("shortened, with the whole address as its title; a dash when unknown", async () => {
    const { buildStatusView } = await import("../../src/operator/status/build-view.js");
    const { renderStatusPage } = await import("../../src/operator/status/render.js");
    const { NOW_MS, sampleInput } = await import("../support/status-fixture.js");
    const input = sampleInput();
    const payments = input.payments.map((p, i) => (i === 0 ? { ...p, payer: ALICE } : p));
    const page = renderStatusPage(buildStatusView({ ...input, payments }, () => NOW_MS));
    expect(page).toContain("<th>wallet</th>");
    expect(page).toMatch(
      new RegExp(`class="payer mono"\\s+title="${ALICE}"\\s*>\\s*${ALICE.slice(0, 5)}…${ALICE.slice(-4)}`),
    );
    expect([...page.matchAll(/class="payer mono"\s*>\s*<span class="muted">—<\/span>/g)].length).toBe(
      payments.length - 1,
    );
  });
});
