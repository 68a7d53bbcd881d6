package main

import "github.com/subhost/subhost/sdk"

func main() {
	sdk.Main(&stage{})
}
