#!/bin/bash
# Entry point inside the runner's container: set up the simulated network, then run the
# endpoint with the runner's environment (ROLE, TESTCASE, REQUESTS, SSLKEYLOGFILE, QLOGDIR).
set -e
/setup.sh
if [ "$ROLE" = "client" ]; then
    # Wait for the simulator to start.
    /wait-for-it.sh sim:57832 -s -t 30
fi
exec /usr/local/bin/interop-endpoint
