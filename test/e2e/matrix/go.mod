module mirrord.test/matrix

go 1.21
