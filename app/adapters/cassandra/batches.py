"""How many partitions one unlogged batch of plain writes may touch.

A coordinator that is also a replica applies a multi-partition batch's mutations one after another,
and with a durable commit log (`commitlog_sync: group` or `batch`, as the local stack runs) each one
waits for its sync: measured on the local stack, a batch of 100 partitions took 95-155 ms, 10 took
9-10 ms, and 200 partitions written as 20 batches of 10 sent together took about 40 ms. Batches of
PARTITIONS_PER_BATCH keep a member-heavy micro-batch's plain writes to tens of milliseconds while
costing a tenth of a statement per member (with `periodic` sync, as on the k8s datacenter, nothing
waits and the size only sets the statement count)."""

PARTITIONS_PER_BATCH = 10
