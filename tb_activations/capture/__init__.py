"""What every framework's capture shares: the records it hands to the render stage and the
`layers=` rules. The captures themselves are in keras/ and torch/.
"""
