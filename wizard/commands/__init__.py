"""One module per command group; wizard.cli assembles them into `meshstead`."""
