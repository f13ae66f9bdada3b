module clustergateway/bench/goproxy

go 1.19
