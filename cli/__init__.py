"""carl_studio.cli"""
