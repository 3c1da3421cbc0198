// verify.mjs recovers the signer of what Moon Vault signed, with ethers v6:
// an implementation independent of the vault's go-ethereum. It reads one
// JSON request on standard input and writes one JSON answer on standard
// output (internal/ethersverify runs it).
//
//   {"op": "transaction", "raw": "0x02f8..."}
//       -> {"from", "hash", "chainId", "to", "value", "type", "nonce"}
//   {"op": "message", "message": "0x<hex bytes>", "signature": "0x..."}
//       -> {"from"}                        (EIP-191 personal message)
//   {"op": "typed_data", "typed_data": {types, primaryType, domain, message}, "signature": "0x..."}
//       -> {"from", "hash"}                (EIP-712)
import { Transaction, TypedDataEncoder, getBytes, verifyMessage, verifyTypedData } from "ethers";

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = [];
    process.stdin.on("data", (c) => chunks.push(c));
    process.stdin.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    process.stdin.on("error", reject);
  });
}

function run(req) {
  switch (req.op) {
    case "transaction": {
      const tx = Transaction.from(req.raw);
      if (!tx.isSigned()) throw new Error("transaction is not signed");
      return {
        from: tx.from, hash: tx.hash, chainId: tx.chainId.toString(), to: tx.to,
        value: tx.value.toString(), type: tx.type, nonce: tx.nonce,
      };
    }
    case "message":
      return { from: verifyMessage(getBytes(req.message), req.signature) };
    case "typed_data": {
      const td = req.typed_data;
      const types = { ...td.types };
      delete types.EIP712Domain; // ethers derives the domain type from the domain
      return {
        from: verifyTypedData(td.domain, types, td.message, req.signature),
        hash: TypedDataEncoder.hash(td.domain, types, td.message),
      };
    }
  }
  throw new Error(`unknown op ${JSON.stringify(req.op)}`);
}

try {
  const out = run(JSON.parse(await readStdin()));
  process.stdout.write(JSON.stringify(out) + "\n");
} catch (e) {
  process.stdout.write(JSON.stringify({ error: String(e && e.message ? e.message : e) }) + "\n");
  process.exitCode = 1;
}
