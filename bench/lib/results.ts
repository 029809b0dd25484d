import type { InstructionsResult } from "../scenarios/instructions.js";
import type { FreshHttpsResult, LatencyResult } from "../scenarios/latency.js";
import type { MemoryResult } from "../scenarios/memory.js";
import type { OfficialResult } from "../scenarios/official.js";
import type { PaidResult } from "../scenarios/paid.js";
import type { ThroughputResult } from "../scenarios/throughput.js";
import type { BenchOptions } from "./measure.js";

/** Everything one run produced: written as JSON, rendered as Markdown. */
export interface Machine {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  kernel: string;
  node: string;
  loadAverageAtStart: number[];
  stokaProxy: { version: string; commit: string };
  peers: Record<string, string>;
  stokaLogging: string;
}

export interface BenchResults {
  startedAt: string;
  finishedAt: string;
  machine: Machine;
  options: BenchOptions;
  throughput: ThroughputResult[];
  latency?: LatencyResult;
  freshHttps?: FreshHttpsResult;
  paid?: PaidResult;
  official?: OfficialResult;
  memory?: MemoryResult;
  instructions?: InstructionsResult;
  failures: { scenario: string; message: string }[];
}
