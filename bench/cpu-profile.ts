/**
 * A V8 CPU profile of the measured part of a run (taken in-process through node:inspector, so
 * start-up and warm-up stay out), and where its CPU time went: each sample is charged to the
 * nearest JavaScript frame on its stack, grouped by package (`pg`, `@opentelemetry/sdk-trace`),
 * by file of this repository (`src/telemetry/otel.ts`) or by Node module (`node:net`). Natives
 * count for the JavaScript that called them: a `writev` is the socket code's, a `randomBytes` is
 * the id generator's. Garbage collection is a group of its own; idle time is left out.
 */
import { Session } from 'node:inspector/promises';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Starts sampling every `intervalMicros`; the returned function stops and hands the profile over. */
export async function startProfiling(intervalMicros = 250): Promise<() => Promise<CpuProfile>> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: intervalMicros });
  await session.post('Profiler.start');
  return async () => {
    const { profile } = await session.post('Profiler.stop');
    session.disconnect();
    return profile as unknown as CpuProfile;
  };
}

const NOT_CPU = new Set(['(idle)', '(program)', '(root)']);

export function groupOf(url: string): string {
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith('node:')) return url.replace(/^node:internal\//, 'node:');
  const own = /\/((?:src|bench|test)\/[^?#]+)/.exec(url);
  return own ? own[1]! : url;
}

/** Microseconds of CPU by group (see above). */
export function cpuByGroup(profile: CpuProfile): Map<string, number> {
  const parentOf = new Map<number, ProfileNode>();
  const byId = new Map<number, ProfileNode>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parentOf.set(child, node);
  }
  const groupOfNode = new Map<number, string | undefined>();
  const resolve = (node: ProfileNode): string | undefined => {
    if (groupOfNode.has(node.id)) return groupOfNode.get(node.id);
    let group: string | undefined;
    const name = node.callFrame.functionName;
    if (NOT_CPU.has(name)) group = undefined;
    else if (name === '(garbage collector)') group = '(garbage collector)';
    else if (node.callFrame.url !== '') group = groupOf(node.callFrame.url);
    else {
      const parent = parentOf.get(node.id);
      group = parent ? (resolve(parent) ?? '(native)') : '(native)';
    }
    groupOfNode.set(node.id, group);
    return group;
  };
  const totals = new Map<string, number>();
  profile.samples.forEach((id, index) => {
    const node = byId.get(id);
    const group = node && resolve(node);
    if (group !== undefined) totals.set(group, (totals.get(group) ?? 0) + (profile.timeDeltas[index] ?? 0));
  });
  return totals;
}
