module stokaproxy/testclient

go 1.19
