// Starts @20minutes/s3rver (its tarball ships no bin).
require('@20minutes/s3rver/lib/cli').parseAsync(process.argv);
