/**
 * The two stoka environments (docs/wire-protocol.md, Hosts and networks). Amounts are USDC atomic
 * units with 7 decimals.
 */
export type StellarNetwork = "stellar:testnet" | "stellar:pubnet";

export interface NetworkInfo {
  network: StellarNetwork;
  passphrase: string;
  /** The USDC Stellar Asset Contract on this network. */
  usdcAsset: string;
  /** The stoka API host for this network. */
  stokaBaseUrl: string;
}

export const NETWORKS: Record<StellarNetwork, NetworkInfo> = {
  "stellar:testnet": {
    network: "stellar:testnet",
    passphrase: "Test SDF Network ; September 2015",
    usdcAsset: "CBIELTK6YBZJU5UP2WWQEUCYKLPU6AUNZ2BQ4WWFEIE3USCIHMXQDAMA",
    stokaBaseUrl: "https://test.api.stoka.space",
  },
  "stellar:pubnet": {
    network: "stellar:pubnet",
    passphrase: "Public Global Stellar Network ; September 2015",
    usdcAsset: "CCW67TSZV3SSS2HXMBQ5JFGCKJNXKZM7UQUWUZPUTHXSTZLEO7SJMI75",
    stokaBaseUrl: "https://api.stoka.space",
  },
};

/** The issuer of testnet USDC; its SAC is NETWORKS["stellar:testnet"].usdcAsset. */
export const TESTNET_USDC_ISSUER = "GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5";

export const USDC_DECIMALS = 7;

export function isStellarNetwork(value: string): value is StellarNetwork {
  return value === "stellar:testnet" || value === "stellar:pubnet";
}
