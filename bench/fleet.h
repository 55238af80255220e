/*
 * kizuna-bench fleet: one world served by one kizuna-server, then by a
 * fleet (nats-server, an authority and N edges), all started by
 * kizuna-bench on loopback in a temporary directory, with the same bots,
 * seed and world settings against each; prints both side by side: CPU
 * per process over the measured window, NATS bytes per avatar-tick,
 * snapshot age and input-to-snapshot latency (docs/BENCHMARKS.md,
 * "fleet mode"; the JSON: docs/BENCH-REPORT.md, "kizuna-bench-fleet/1").
 *
 * kizuna-bench never links NATS: it only starts nats-server and reads its
 * monitoring port.
 */
#ifndef KZB_FLEET_H
#define KZB_FLEET_H

/* `kizuna-bench fleet ...` with argv[0] == "fleet". Returns the exit
 * status: 0 done, 1 a run failed (a process died early, the world did not
 * come up, a file could not be written), 2 bad usage or a program
 * missing, 128 + the signal when interrupted. */
int kzb_fleet_main(int argc, char **argv);

#endif /* KZB_FLEET_H */
