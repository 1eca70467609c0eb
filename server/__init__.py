"""carl_studio.server"""
